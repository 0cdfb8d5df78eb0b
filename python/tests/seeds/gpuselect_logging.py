# gpuselect README, "Debug logging". Changed: the import line (was
# `from gpuselect import gpuselect`).
import logging
from gpusel.compat import gpuselect
logging.getLogger("gpuselect").setLevel(logging.DEBUG)
gpuselect()
