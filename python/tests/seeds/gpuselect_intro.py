# gpuselect README, the introduction's example. Changed: the import line
# (was `from gpuselect import gpuselect`). `import torch` gets the stand-in.
# import the module and call gpuselect with default parameters
from gpusel.compat import gpuselect
gpuselect()
# CUDA_VISIBLE_DEVICES is now updated

import torch
...
