//! With the `libtorch` feature: makes this crate's own test binaries really
//! load libtorch_cuda, and passes the libtorch lib directory on to the
//! `gpusel` build script (as `DEP_GPUSEL_TORCH_LIBTORCH_LIB`), which must do
//! the same for the binary: link arguments do not travel to dependents.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:libtorch_lib={dir}");
    if Path::new(&dir).join("libtorch_cuda.so").exists() {
        // Nothing in gpusel calls into libtorch_cuda directly, so the default
        // --as-needed drops it and libtorch then silently reports no CUDA.
        // Link arguments come last on the linker line, so naming the library
        // again after --no-as-needed is what keeps it.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    } else {
        println!(
            "cargo:warning=no libtorch_cuda.so in {dir}: a CPU-only PyTorch, the torch provider will never see CUDA"
        );
    }
    // PyPI's libtorch is not on the loader's path; its own libraries find the
    // nvidia-* wheels through their $ORIGIN rpaths.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
}
