# gpuselect README, "Custom selection". Changed: the import line (was
# `from gpuselect import gpuselect, GpuInfo`).
from gpusel.compat import gpuselect, GpuInfo

def custom_select(gpu: GpuInfo) -> bool:
    # a GpuInfo object has fields:
    #   device (int): device ID
    #   name (str): device name
    #   util (int): device utilization percentage
    #   mem_util (int): device memory utilization percentage
    #   processes (int): device process count

    # match any device with "3090" in the name and <= 5% utilization
    return "3090" in gpu.name and gpu.util <= 5

# note that this effectively overrides all other filtering parameters except for `count`
gpuselect(selector=custom_select)
