# gpuselect README, "Requesting specific GPU(s)". Changed: the import line
# (was `from gpuselect import gpuselect`).
from gpusel.compat import gpuselect
# select device 0, if possible (this still applies the usual utilization filters)
gpuselect(devices=0)

# select devices 0,1 if possible (this still applies the usual utilization filters)
gpuselect(devices=[0, 1])
