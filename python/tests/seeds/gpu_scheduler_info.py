# GPU Scheduler README, "GPU Information". Changed: the import line (was
# `from gpu_scheduler import get_gpu_info, find_free_gpus`).
from gpusel.compat import get_gpu_info, find_free_gpus

# Get comprehensive GPU information
gpu_info = get_gpu_info()
for gpu in gpu_info:
    print(f"GPU {gpu['gpu_id']}: {gpu['name']}")
    print(f"  Memory: {gpu['memory_free']}MB free / {gpu['memory_total']}MB total")
    print(f"  Power: {gpu['power_draw']}W / {gpu['power_limit']}W")
    print(f"  Utilization: {gpu['utilization']}%")

# Find free GPUs
free_gpus = find_free_gpus(
    memory_free_threshold_gb=20,
    power_threshold_w=50,
    utilization_threshold_percent=1
)
print(f"Found {len(free_gpus)} free GPUs")
