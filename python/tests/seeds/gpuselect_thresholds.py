# gpuselect README, "Changing default utilization thresholds". Changed: the
# import line (was `from gpuselect import gpuselect`).
from gpusel.compat import gpuselect
# allow selection of GPUs with up to 10% device utilization and up to 1
# other active process
gpuselect(util=10, processes=1)
