# GPU Scheduler README, "Quick Start". Changed: the import line (was
# `from gpu_scheduler import GPUScheduler`). `model` and `torch` are the
# runner's stand-ins (the README's block uses them without defining them).
from gpusel.compat import GPUScheduler

# Acquire a single GPU with default settings
with GPUScheduler() as gpu_ids:
    # Option 1: Explicitly use the scheduled GPU (recommended)
    device = f"cuda:{gpu_ids[0]}"
    model = model.to(device)
    
    # Option 2: Use default device (scheduler sets it automatically)
    device = torch.device("cuda")  # Uses the scheduled GPU
    model = model.to(device)
