# gpuselect README, "Request GPU(s) of a specific type". Changed: the import
# line (was `from gpuselect import gpuselect`).
from gpusel.compat import gpuselect
# select an idle GPU with "A6000" in the name, e.g. "NVIDIA RTX 6000 Ada Generation"
gpuselect(name="A6000")

# Or to do the same thing with multiple GPUs:
gpuselect(count=2, name="A6000")
