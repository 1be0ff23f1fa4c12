//! Which device the page runs on: WebGPU on a hardware adapter that has what burn's kernels
//! need, else burn's CPU backend compiled to wasm; the user can switch, and
//! `?backend=webgpu|cpu` chooses at load. The device lives in the model's worker
//! ([`crate::worker`]); the page sees the [`Backend`]. The WebGPU workarounds are in
//! [`adapter`]; the CPU backend's threads in [`threads`].

use burn::tensor::{Device, Tensor};

pub use crate::protocol::{Backend, Choice};
use crate::watchdog::{WEBGPU_PATIENCE_S, WEBGPU_SOFTWARE_PATIENCE_S};

pub mod adapter;
pub mod threads;

impl Backend {
    fn cpu(detail: String) -> Self {
        Backend {
            label: "cpu".into(),
            detail: format!("CPU in wasm (burn flex, {}){detail}", cpu_kernels()),
            software: false,
            threads: threads::count(),
        }
    }

    pub fn is_webgpu(&self) -> bool {
        self.label == "webgpu"
    }

    /// How long the watchdog waits on one operation; `None` on the CPU.
    pub fn patience_s(&self) -> Option<u32> {
        self.is_webgpu().then_some(if self.software {
            WEBGPU_SOFTWARE_PATIENCE_S
        } else {
            WEBGPU_PATIENCE_S
        })
    }
}

/// What the CPU backend runs on: how many threads (the threaded flavour's rayon pool,
/// [`threads`]), with or without WebAssembly SIMD (the build's `target-feature`).
fn cpu_kernels() -> String {
    let simd = if cfg!(target_feature = "simd128") {
        "SIMD"
    } else {
        "no SIMD"
    };
    match threads::count() {
        1 => format!("1 thread, {simd}"),
        n => format!("{n} threads, {simd}"),
    }
}

impl Choice {
    /// `?backend=webgpu|cpu`; anything else (or nothing) lets the page choose.
    pub fn from_query(backend: Option<&str>) -> Self {
        match backend {
            Some("webgpu") => Choice::WebGpu,
            Some("cpu") => Choice::Cpu,
            _ => Choice::Auto,
        }
    }
}

/// Brings up the device for `choice`. `Auto` takes WebGPU only on a hardware adapter that
/// offers `subgroups` and has not failed in this browser before (`webgpu_failure`: why it
/// did, as the page remembers it); otherwise burn's CPU backend in wasm, saying why.
pub async fn init_device(choice: Choice, webgpu_failure: Option<String>) -> (Device, Backend) {
    let webgpu = match webgpu_adapter(choice, webgpu_failure).await {
        Ok(facts) => webgpu_device(facts).await,
        Err(why) => Err(why),
    };
    match webgpu {
        Ok(webgpu) => webgpu,
        Err(why) => (Device::flex(), Backend::cpu(why)),
    }
}

/// The WebGPU adapter that `choice` takes, or why the page runs on the CPU instead (the
/// text that follows "cpu" in the backend line). The page asks it too, before it starts
/// the worker: only the single-threaded flavour of the wasm has WebGPU.
pub async fn webgpu_adapter(
    choice: Choice,
    webgpu_failure: Option<String>,
) -> Result<adapter::AdapterFacts, String> {
    if choice == Choice::Cpu {
        return Err(", chosen by the user".into());
    }
    if choice == Choice::Auto
        && let Some(why) = webgpu_failure
    {
        return Err(format!(
            ": WebGPU failed in this browser ({why}); \"Try WebGPU\" tries it again"
        ));
    }
    let Some(facts) = adapter::adapter().await else {
        return Err("; this browser gives no WebGPU adapter".into());
    };
    if !facts.subgroups {
        return Err(format!(
            "; this browser's WebGPU adapter ({}) lacks the 'subgroups' feature that \
             burn's WebGPU kernels need",
            facts.name
        ));
    }
    if choice == Choice::Auto && facts.software {
        return Err(format!(
            ": the WebGPU adapter is a software one ({}), slower than the CPU backend; \
             \"Try WebGPU\" uses it anyway",
            facts.name
        ));
    }
    Ok(facts)
}

/// The WebGPU device on the adapter `facts` describes.
#[cfg(feature = "webgpu")]
async fn webgpu_device(facts: adapter::AdapterFacts) -> Result<(Device, Backend), String> {
    // burn's WebGPU kernels need the adapter's `subgroups` feature (see `adapter.rs`).
    adapter::install_webgpu_hooks();
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("; WebGPU unavailable: {e}"))?;
    let detail = if facts.software {
        format!("WebGPU (burn wgpu) on a software adapter ({})", facts.name)
    } else {
        format!("WebGPU (burn wgpu) on {}", facts.name)
    };
    Ok((
        device,
        Backend {
            label: "webgpu".into(),
            detail,
            software: facts.software,
            threads: 1,
        },
    ))
}

/// The threaded flavour has no WebGPU; the page starts the other flavour's worker when
/// WebGPU is to be had, so this is said only if that failed.
#[cfg(not(feature = "webgpu"))]
async fn webgpu_device(facts: adapter::AdapterFacts) -> Result<(Device, Backend), String> {
    Err(format!(
        "; this flavour of the page's wasm (threads) has no WebGPU for {}",
        facts.name
    ))
}

/// A small computation on the device, read back asynchronously: `[[1,2],[3,4]]²` sums to 54.
pub async fn check(device: &Device) -> Result<f32, String> {
    let a = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], device);
    read_f32(a.clone().matmul(a).sum()).await.map(|v| v[0])
}

/// A tensor's values, read back asynchronously (WebGPU cannot read synchronously).
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    t.into_data_async()
        .await
        .map_err(|e| format!("{e:?}"))?
        .try_into_vec_as::<f32>()
        .map_err(|e| format!("{e:?}"))
}
