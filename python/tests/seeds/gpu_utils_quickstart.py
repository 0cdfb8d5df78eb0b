# GPU-utils README, "Usage example". Changed: the two import lines (were
# `from gpu_utilities.obtainers.nvml import NvmlGPUInfoObtainer` and
# `from gpu_utils.gpu_selector import GPUSelectorFactory, GPUSelectStrategy`).
# `import torch` gets the runner's stand-in.
from gpusel.compat import NvmlGPUInfoObtainer
from gpusel.compat import GPUSelectorFactory, GPUSelectStrategy
import torch

if __name__ == "__main__":
    gpu_info_obtainer = NvmlGPUInfoObtainer()  # Use NVML and nvidia-smi as GPU information provider
    gpus_available = gpu_info_obtainer.gpus_available()  # Check if information about GPU is available

    if not gpus_available:
        raise Exception('GPUs are unavailable')

    selector = GPUSelectorFactory().selector(GPUSelectStrategy.BEST_FIT)  # Create Selector for strategy BEST_FIT

    gpu = selector.select(gpu_info_obtainer.gpus(), 800 * 1024 * 1024)  # Sekect GPU that is able to allocate 800 MB according to strategy
    print(f"gpu {gpu} is the best option now!")

    torch.cuda.device(gpu.to_torch_device())  # Example illustrating usage in torch

