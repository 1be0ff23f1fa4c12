//! The browser's WebGPU adapter: what it offers, and the `subgroups` feature burn's kernels need.
//!
//! cubecl (burn's kernel compiler) writes `enable subgroups;` into every WGSL kernel that
//! reads a subgroup builtin (the matmul kernels do). The browser accepts that directive only
//! on a device created with the `subgroups` feature, but wgpu 30's WebGPU backend has no
//! entry for `subgroups` in its feature table, so it never asks for it: Chromium then
//! refuses the shader ("extension 'subgroups' is not allowed in the current environment")
//! and the device is lost. Until wgpu maps the feature, [`install_webgpu_hooks`] wraps
//! `GPUAdapter.requestDevice` so that every device the page creates asks for `subgroups`
//! whenever its adapter offers it. Tint's uniformity analysis then still refuses the
//! matmul kernel's `subgroupAdd` ("must only be called from subgroup uniform control
//! flow"), so the same shim adds `diagnostic(off, subgroup_uniformity);` to kernels that
//! enable subgroups. A browser whose adapter lacks the feature cannot run these kernels;
//! [`adapter`] lets the page say so and stay on the CPU (and tells a software adapter).
//! The same wrapper reports a lost device to the page ([`on_device_lost`]): burn's reads
//! from a lost device are never answered.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function install_webgpu_hooks() {
  if (typeof GPUAdapter === 'undefined') return false;
  const proto = GPUAdapter.prototype;
  if (proto.__polytaskRequestsSubgroups) return true;
  const requestDevice = proto.requestDevice;
  proto.requestDevice = function (descriptor) {
    const d = Object.assign({}, descriptor || {});
    const features = Array.from(d.requiredFeatures || []);
    if (this.features.has('subgroups') && !features.includes('subgroups')) features.push('subgroups');
    d.requiredFeatures = features;
    return requestDevice.call(this, d).then((device) => {
      (globalThis.__polytaskDevices ??= []).push(device);
      // A lost device leaves burn's pending reads unanswered: the page must hear of it.
      device.lost.then((info) => {
        const onLost = globalThis.__polytaskOnDeviceLost;
        if (onLost) onLost(`${info.reason}: ${info.message}`);
      });
      return device;
    });
  };
  proto.__polytaskRequestsSubgroups = true;
  // Tint cannot prove that cubecl's subgroup reductions run in subgroup-uniform control
  // flow (the branch it flags depends on an invocation builtin that cubecl's matmul layout
  // keeps equal across a subgroup) and rejects them; the WGSL diagnostic turns that analysis
  // off for these kernels. The browser tests check the results against native ones.
  const device = GPUDevice.prototype;
  const createShaderModule = device.createShaderModule;
  device.createShaderModule = function (descriptor) {
    const code = descriptor && descriptor.code;
    if (typeof code === 'string' && code.includes('enable subgroups;') &&
        !code.includes('subgroup_uniformity')) {
      descriptor = Object.assign({}, descriptor, {
        code: code.replace('enable subgroups;', 'enable subgroups;\ndiagnostic(off, subgroup_uniformity);'),
      });
    }
    return createShaderModule.call(this, descriptor);
  };
  return true;
}

export function lose_devices() {
  for (const device of globalThis.__polytaskDevices ?? []) device.destroy();
}

export async function adapter_facts() {
  if (!navigator.gpu) return null;
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return null;
  const info = adapter.info || {};
  const name = [info.vendor, info.architecture, info.description].filter((x) => x).join(' ');
  const software = Boolean(info.isFallbackAdapter || adapter.isFallbackAdapter ||
    /swiftshader|llvmpipe|lavapipe|software/i.test(name));
  return { subgroups: adapter.features.has('subgroups'), software, name };
}
"#)]
extern "C" {
    /// Wraps `GPUAdapter.requestDevice` (ask for `subgroups` when the adapter offers it;
    /// report a lost device to [`on_device_lost`]) and `GPUDevice.createShaderModule` (the
    /// uniformity diagnostic). Idempotent; `false` when the browser has no WebGPU at all.
    pub fn install_webgpu_hooks() -> bool;

    /// Destroys every device created since [`install_webgpu_hooks`]: each is then lost,
    /// as when a GPU goes away (the browser tests' way to lose one).
    pub fn lose_devices();

    #[wasm_bindgen(catch)]
    async fn adapter_facts() -> Result<JsValue, JsValue>;
}

/// Calls `f` with the reason when a WebGPU device the worker created is lost (a driver
/// reset, a GPU gone, `destroy()`); the last registration wins.
pub fn on_device_lost(f: impl Fn(String) + 'static) {
    let f = Closure::<dyn Fn(String)>::new(f);
    let _ = js_sys::Reflect::set(
        &js_sys::global(),
        &"__polytaskOnDeviceLost".into(),
        f.as_ref(),
    );
    // The worker lives as long as the callback.
    f.forget();
}

/// What the page needs to know about the browser's default WebGPU adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterFacts {
    /// Whether it offers the `subgroups` feature burn's kernels need.
    pub subgroups: bool,
    /// A software (fallback) adapter such as SwiftShader: a CPU pretending to be a GPU,
    /// slower than burn's CPU backend and minutes to compile the kernels.
    pub software: bool,
    /// Vendor, architecture and description as the browser gives them (may be empty).
    pub name: String,
}

/// The default adapter's facts; `None` when the browser gives no WebGPU adapter.
pub async fn adapter() -> Option<AdapterFacts> {
    let v = adapter_facts().await.ok()?;
    if v.is_null() || v.is_undefined() {
        return None;
    }
    let get = |k: &str| js_sys::Reflect::get(&v, &k.into()).ok();
    Some(AdapterFacts {
        subgroups: get("subgroups").and_then(|x| x.as_bool()).unwrap_or(false),
        software: get("software").and_then(|x| x.as_bool()).unwrap_or(false),
        name: get("name").and_then(|x| x.as_string()).unwrap_or_default(),
    })
}
