# GPU Scheduler README, "Important: Device Handling". Added: the import line
# (the README's block uses the GPUScheduler its Quick Start imported).
# `torch` is the runner's stand-in.
from gpusel.compat import GPUScheduler
with GPUScheduler() as gpu_ids:
    # If scheduler acquired GPU 3:
    # - torch.cuda.current_device() returns 3
    # - torch.cuda.set_device(3) was called
    
    device1 = torch.device("cuda:0")      # ❌ Still refers to GPU 0, not GPU 3!
    device2 = torch.device(f"cuda:{gpu_ids[0]}")  # ✅ Correct: uses GPU 3
    device3 = torch.device("cuda")        # ✅ Uses default (GPU 3, set by scheduler)
