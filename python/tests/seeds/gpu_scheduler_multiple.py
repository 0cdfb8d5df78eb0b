# GPU Scheduler README, "Multiple GPUs". Added: the import line (the
# README's block uses the GPUScheduler its earlier blocks imported).
from gpusel.compat import GPUScheduler
# Acquire multiple GPUs
with GPUScheduler(
    num_gpus=2,
    memory_free_threshold_gb=10,
    power_threshold_w=50,
    utilization_threshold_percent=1
) as gpu_ids:
    print(f"Using GPUs: {gpu_ids}")
    
    # Use the first scheduled GPU as default
    device = f"cuda:{gpu_ids[0]}"
    
    # Or access specific GPUs
    device1 = f"cuda:{gpu_ids[0]}"
    device2 = f"cuda:{gpu_ids[1]}"
    
    # Your code here
