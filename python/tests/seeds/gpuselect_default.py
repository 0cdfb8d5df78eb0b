# gpuselect README, "Request any single idle GPU (default parameters)".
# Changed: the import line (was `from gpuselect import gpuselect`).
from gpusel.compat import gpuselect
gpuselect() 
# CUDA_VISIBLE_DEVICES is now updated. The method also returns
# its new value (e.g. "1").

# import other packages here
