//! With the `torch` feature: links libtorch_cuda into `gpusel` for real.
//! provider-torch's build script cannot do it for us (link arguments do not
//! travel to dependents), so it passes the libtorch lib directory here.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_GPUSEL_TORCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_GPUSEL_TORCH_LIBTORCH_LIB") else {
        return;
    };
    if Path::new(&dir).join("libtorch_cuda.so").exists() {
        // gpusel never calls libtorch_cuda directly, so the default
        // --as-needed drops it and libtorch then silently reports no CUDA.
        // Link arguments come last on the linker line, so naming the library
        // again after --no-as-needed is what keeps it.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    } else {
        println!(
            "cargo:warning=no libtorch_cuda.so in {dir}: a CPU-only PyTorch, `gpusel --provider torch` will never see CUDA"
        );
    }
    // PyPI's libtorch is not on the loader's path; its own libraries find the
    // nvidia-* wheels through their $ORIGIN rpaths.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
}
