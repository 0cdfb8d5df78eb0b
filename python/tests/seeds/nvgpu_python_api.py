# nvgpu README, "Python API". Changed: the import line (was `import nvgpu`).
# The README shows a session: the runner runs this as the interpreter's
# prompt does, echoing each expression's value. Left out: the README's
# printout of gpu_info()'s value, which is output, not code.
from gpusel.compat import nvgpu

nvgpu.available_gpus()
# ['0', '2']

nvgpu.gpu_info()
