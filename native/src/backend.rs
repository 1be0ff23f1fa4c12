//! Choosing the burn device at run time: wgpu on a GPU, the CPU backend otherwise.

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
}

/// The device chosen, with a human description.
#[derive(Debug, Clone)]
pub struct Selected {
    pub device: Device,
    pub description: String,
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
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
    }
}

/// Picks the device for `choice`; notices go to stderr.
pub fn select(choice: BackendChoice) -> anyhow::Result<Selected> {
    match choice {
        BackendChoice::Cpu => Ok(cpu()),
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
            })
        }
    }
}
