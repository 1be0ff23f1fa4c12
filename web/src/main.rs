//! Polytask in the browser: a Leptos CSR app on the same core as the native binary.
//! For now it brings up a burn device (WebGPU when the browser gives an adapter, else the
//! CPU backend compiled to wasm), runs a check on it, and says which it got.

use burn::tensor::{Device, Tensor};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::prelude::*;

mod exports;

/// Which backend the page runs on.
#[derive(Clone, Debug)]
struct Backend {
    label: String,
    detail: String,
}

/// WebGPU when an adapter is given, else burn's CPU backend in wasm.
async fn init_device() -> (Device, Backend) {
    match Device::wgpu_options().init_async().await {
        Ok(device) => (
            device,
            Backend {
                label: "webgpu".into(),
                detail: "WebGPU (burn wgpu)".into(),
            },
        ),
        Err(e) => (
            Device::flex(),
            Backend {
                label: "cpu".into(),
                detail: format!("CPU in wasm (burn flex); WebGPU unavailable: {e}"),
            },
        ),
    }
}

/// A small computation on the device, read back asynchronously: `[[1,2],[3,4]]²` sums to 54.
async fn check(device: &Device) -> Result<f32, String> {
    let a = Tensor::<2>::from_floats([[1.0, 2.0], [3.0, 4.0]], device);
    let data = a
        .clone()
        .matmul(a)
        .sum()
        .into_data_async()
        .await
        .map_err(|e| format!("{e:?}"))?;
    data.try_into_vec_as::<f32>()
        .map_err(|e| format!("{e:?}"))
        .map(|v| v[0])
}

#[component]
fn App() -> impl IntoView {
    let (backend, set_backend) = signal(None::<Backend>);
    let (status, set_status) = signal(String::from("starting…"));
    spawn_local(async move {
        let (device, b) = init_device().await;
        set_backend.set(Some(b));
        match check(&device).await {
            Ok(v) if (v - 54.0).abs() < 1e-4 => set_status.set("ready".into()),
            Ok(v) => set_status.set(format!("device check failed: got {v}, expected 54")),
            Err(e) => set_status.set(format!("device check failed: {e}")),
        }
    });
    view! {
        <main>
            <h1>"Polytask"</h1>
            <p class="tagline">"Multi-task and few-shot NLP, in your browser."</p>
            <p>
                "Backend: "
                <strong id="backend" data-backend=move || backend.get().map(|b| b.label).unwrap_or_default()>
                    {move || backend.get().map(|b| b.detail).unwrap_or_else(|| "detecting…".into())}
                </strong>
            </p>
            <p>"Status: " <span id="status">{move || status.get()}</span></p>
        </main>
    }
}

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(App);
}

/// Keeps the exported functions linked into the binary.
#[wasm_bindgen]
pub fn polytask_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
