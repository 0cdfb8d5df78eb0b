# autocvd README, "Code". Changed: the import line (was
# `from autocvd import autocvd`).
from gpusel.compat import autocvd


autocvd()
