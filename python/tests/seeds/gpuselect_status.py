# gpuselect README, "Reading GPU state". Changed: the import line (was
# `from gpuselect import gpustatus`).
from gpusel.compat import gpustatus
# respect CUDA_VISIBLE_DEVICES
gpu_info = gpustatus()

# use all GPUs accessible to the NVML API
all_gpu_info = gpustatus(only_cvd=False)
