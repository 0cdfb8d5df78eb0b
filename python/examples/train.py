"""docs/python.md's first example: two GPUs with 20 GiB free each, waited
for, held for the training run, and given back at the end of the block."""

import os

import gpusel

with gpusel.select(count=2, mem="20GiB", wait=True, timeout="1h") as gpus:
    print("training on", gpus.cuda_visible_devices, "=", os.environ["CUDA_VISIBLE_DEVICES"])
    for i, device in enumerate(gpus.devices):
        # Inside the selection, cuda:{i} is devices[i].
        print(f"cuda:{i}", device.name, device.uuid, device.memory_free)
