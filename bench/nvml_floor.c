/* The floor for issue 3's benchmark: the NVML calls a selector must make,
 * and nothing else. init, count, and per GPU: name, UUID, memory,
 * utilization, compute processes, temperature, power; then print the first
 * idle GPU, as `gpusel` (print mode) does.
 *
 * The library is dlopen'ed from argv[1] (or libnvidia-ml.so.1), like
 * nvml-wrapper and pynvml do, so the three pay the same loading cost.
 *
 *     cc -O2 -o nvml_floor bench/nvml_floor.c -ldl
 *     ./nvml_floor /path/to/libnvidia-ml.so.1
 */
#include <dlfcn.h>
#include <stdio.h>

typedef int ret_t;
typedef void *dev_t_;
typedef struct { unsigned long long total, free, used; } mem_t;
typedef struct { unsigned int gpu, memory; } util_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} proc_t;

#define SYM(type, name) __typeof__(type) name = (__typeof__(type))dlsym(lib, #name); if (!name) { fprintf(stderr, "missing %s\n", #name); return 2; }

int main(int argc, char **argv) {
    void *lib = dlopen(argc > 1 ? argv[1] : "libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 2; }
    SYM(ret_t (*)(void), nvmlInit_v2)
    SYM(ret_t (*)(void), nvmlShutdown)
    SYM(ret_t (*)(unsigned int *), nvmlDeviceGetCount_v2)
    SYM(ret_t (*)(unsigned int, dev_t_ *), nvmlDeviceGetHandleByIndex_v2)
    SYM(ret_t (*)(dev_t_, char *, unsigned int), nvmlDeviceGetName)
    SYM(ret_t (*)(dev_t_, char *, unsigned int), nvmlDeviceGetUUID)
    SYM(ret_t (*)(dev_t_, mem_t *), nvmlDeviceGetMemoryInfo)
    SYM(ret_t (*)(dev_t_, util_t *), nvmlDeviceGetUtilizationRates)
    SYM(ret_t (*)(dev_t_, unsigned int *, proc_t *), nvmlDeviceGetComputeRunningProcesses_v3)
    SYM(ret_t (*)(dev_t_, int, unsigned int *), nvmlDeviceGetTemperature)
    SYM(ret_t (*)(dev_t_, unsigned int *), nvmlDeviceGetPowerUsage)

    if (nvmlInit_v2() != 0) { fprintf(stderr, "nvmlInit_v2 failed\n"); return 2; }
    unsigned int count = 0;
    if (nvmlDeviceGetCount_v2(&count) != 0) return 2;
    int chosen = -1;
    for (unsigned int i = 0; i < count; i++) {
        dev_t_ dev;
        if (nvmlDeviceGetHandleByIndex_v2(i, &dev) != 0) continue;
        char name[96], uuid[96];
        mem_t mem; util_t util; proc_t procs[64];
        unsigned int nprocs = 64, temp = 0, power = 0;
        nvmlDeviceGetName(dev, name, sizeof name);
        nvmlDeviceGetUUID(dev, uuid, sizeof uuid);
        nvmlDeviceGetMemoryInfo(dev, &mem);
        int util_ok = nvmlDeviceGetUtilizationRates(dev, &util) == 0;
        int procs_ok = nvmlDeviceGetComputeRunningProcesses_v3(dev, &nprocs, procs) == 0;
        nvmlDeviceGetTemperature(dev, 0, &temp);
        nvmlDeviceGetPowerUsage(dev, &power);
        if (chosen < 0 && util_ok && procs_ok && util.gpu == 0 && util.memory == 0 && nprocs == 0)
            chosen = (int)i;
    }
    nvmlShutdown();
    if (chosen < 0) return 3;
    printf("%d\n", chosen);
    return 0;
}
