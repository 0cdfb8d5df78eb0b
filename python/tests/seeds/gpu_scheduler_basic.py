# GPU Scheduler README, "Basic Usage". Changed: the import line (was
# `from gpu_scheduler import GPUScheduler`). `model` and `torch` are the
# runner's stand-ins.
from gpusel.compat import GPUScheduler

# Single GPU with memory constraint
with GPUScheduler(memory_free_threshold_gb=20) as gpu_ids:
    # Explicitly use the scheduled GPU (recommended)
    device = f"cuda:{gpu_ids[0]}"
    print(f"Using GPU: {gpu_ids[0]} on device: {device}")
    
    # Or use default device (scheduler already set it)
    device = torch.device("cuda")
    
    # Your code here
    model = model.to(device)
