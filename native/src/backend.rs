//! Choosing the burn device at run time: wgpu on a GPU, the CPU backend otherwise; LibTorch
//! on request in a build with the `torch` feature.

use burn::tensor::wgpu::wgpu;
use burn::tensor::{Device, DeviceKind};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// wgpu when a GPU adapter exists, else the CPU backend (with a notice).
    Auto,
    /// wgpu on whatever adapter exists, software ones included (llvmpipe).
    Wgpu,
    /// burn's CPU backend (flex: multithreaded, SIMD).
    Cpu,
    /// LibTorch on the CPU through burn-tch: another engine to compare with, in a build
    /// with the `torch` feature (LibTorch from the PyPI `torch` wheel).
    Torch,
}

/// The device chosen, with a human description.
#[derive(Debug, Clone)]
pub struct Selected {
    pub device: Device,
    pub description: String,
    /// The engine in one word: `flex`, `wgpu` or `libtorch`.
    pub engine: &'static str,
}

/// Adapters that wgpu can see: (name, device type, graphics API).
pub fn adapters() -> Vec<wgpu::AdapterInfo> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .map(|a| a.get_info())
        .collect()
}

fn is_gpu(info: &wgpu::AdapterInfo) -> bool {
    !matches!(
        info.device_type,
        wgpu::DeviceType::Cpu | wgpu::DeviceType::Other
    )
}

/// Whether wgpu sees a hardware GPU (software adapters such as llvmpipe do not count).
pub fn has_gpu() -> bool {
    adapters().iter().any(is_gpu)
}

fn cpu() -> Selected {
    Selected {
        device: Device::flex(),
        description: format!(
            "cpu (burn flex, {} matmuls, {} threads)",
            // OpenBLAS where the build found it (feature `openblas`, the default).
            burn_flex::F32_MATMUL_KERNEL,
            cpu_threads()
        ),
        engine: "flex",
    }
}

/// Threads of a CPU engine: `RAYON_NUM_THREADS` (which sizes flex's pool), else one per
/// CPU.
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// LibTorch's CPU device, with as many threads as flex would use.
#[cfg(feature = "torch")]
fn torch() -> anyhow::Result<Selected> {
    let threads = cpu_threads();
    tch::set_num_threads(threads as i32);
    // burn marks burn-tch deprecated in favour of its own backends; here it is the
    // point of the comparison.
    #[allow(deprecated)]
    let device = Device::libtorch();
    Ok(Selected {
        device,
        description: format!("torch (LibTorch on the CPU through burn-tch, {threads} threads)"),
        engine: "libtorch",
    })
}

#[cfg(not(feature = "torch"))]
fn torch() -> anyhow::Result<Selected> {
    anyhow::bail!(
        "--backend torch: this core-train was built without LibTorch; build it with \
         `--features torch` after `pip install torch==2.9.0`, with LIBTORCH_USE_PYTORCH=1 \
         (README, Performance)"
    )
}

/// Picks the device for `choice`; notices go to stderr.
pub fn select(choice: BackendChoice) -> anyhow::Result<Selected> {
    match choice {
        BackendChoice::Cpu => Ok(cpu()),
        BackendChoice::Torch => torch(),
        BackendChoice::Wgpu | BackendChoice::Auto => {
            let found = adapters();
            let gpu = found.iter().find(|a| is_gpu(a));
            let chosen = match (choice, gpu) {
                (_, Some(gpu)) => gpu,
                (BackendChoice::Wgpu, None) => match found.first() {
                    Some(software) => software,
                    None => anyhow::bail!(
                        "--backend wgpu: no wgpu adapter found (no GPU, no Vulkan driver such as mesa-vulkan-drivers)"
                    ),
                },
                _ => {
                    let cpu = cpu();
                    match found.first() {
                        Some(a) => eprintln!(
                            "note: no GPU adapter (only the software adapter {:?}); using {} — pass --backend wgpu to use it anyway",
                            a.name, cpu.description
                        ),
                        None => eprintln!("note: no wgpu adapter found; using {}", cpu.description),
                    }
                    return Ok(cpu);
                }
            };
            Ok(Selected {
                device: Device::wgpu(DeviceKind::DefaultDevice),
                description: format!(
                    "wgpu on {} ({:?}, {:?})",
                    chosen.name, chosen.device_type, chosen.backend
                ),
                engine: "wgpu",
            })
        }
    }
}
