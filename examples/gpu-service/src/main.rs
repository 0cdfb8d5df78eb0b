//! The service GPU-utils is for, written against the gpusel library: at
//! start-up take the best-fit GPU for 800 MiB and hold it while the service
//! runs. It reads the site's config as `gpusel` does, so its lease and
//! `gpusel -- CMD`'s live in the same lock directory and `gpusel list` shows
//! it. It serves until its standard input closes.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let site = gpusel::Config::load()?;
    let provider = gpusel::open(&site.provider.value, &site)?;
    let gpu = gpusel::selector(&site)?
        .strategy(gpusel::strategy("best-fit")?)
        .min_free_memory(gpusel::parse_size("800MiB")?)
        .select(provider.as_ref())?;
    println!("serving on GPU {}", gpu.cuda_visible_devices);
    std::io::stdin().read_line(&mut String::new())?; // ... serve; `gpu` holds the lease
    Ok(())
}
