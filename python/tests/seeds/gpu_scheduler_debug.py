# GPU Scheduler README, "Debug Mode". Added: the import line (the README's
# block uses the GPUScheduler its earlier blocks imported).
from gpusel.compat import GPUScheduler
# Bypass all health checks (useful for development)
with GPUScheduler(debug_mode=True) as gpu_ids:
    print(f"Using GPU: {gpu_ids[0]}")
    # Your code here
