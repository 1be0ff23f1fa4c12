//! Loading a model bundle (`core-train export`) over HTTP: the manifest first, then every
//! file it lists, each checked against its size and sha256 (the browser's own SHA-256,
//! `crypto.subtle`, where the context has it; otherwise the `sha2` crate in wasm). Files
//! come from the page, which reads them while the wasm compiles (`index.html`, from the
//! Cache API or the network), else from the Cache API when a previous visit stored them
//! (a damaged entry is dropped), otherwise from the network, and are then cached. URLs are relative to the page, so the site works from
//! any sub-path. Runs in the model's worker ([`crate::worker`]), which has `fetch` and the
//! Cache API as the page has.

use js_sys::{ArrayBuffer, Promise, Reflect, Uint8Array};
pub use polytask_core::io::manifest::{FileEntry, Manifest};
use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Response};

use super::scope;
use crate::page::now_ms;

const CACHE: &str = "polytask-bundle-v1";

fn js_err(what: &str, e: JsValue) -> String {
    format!(
        "{what}: {}",
        e.as_string().unwrap_or_else(|| format!("{e:?}"))
    )
}

async fn open_cache() -> Option<Cache> {
    // `caches` is missing outside secure contexts (plain http but for localhost).
    let caches = scope().caches().ok().filter(|c| !c.is_undefined())?;
    let cache = JsFuture::from(caches.open(CACHE)).await.ok()?;
    cache.dyn_into::<Cache>().ok()
}

// `crypto.subtle`, bound here rather than through web-sys features (see `Scope`).
#[wasm_bindgen]
extern "C" {
    type SubtleCrypto;

    #[wasm_bindgen(method, catch)]
    fn digest(this: &SubtleCrypto, algorithm: &str, data: &Uint8Array) -> Result<Promise, JsValue>;
}

/// `crypto.subtle`: missing outside secure contexts (plain http but for localhost).
fn subtle() -> Option<SubtleCrypto> {
    let crypto = Reflect::get(&scope(), &"crypto".into()).ok()?;
    let subtle = Reflect::get(&crypto, &"subtle".into()).ok()?;
    (!subtle.is_undefined() && !subtle.is_null()).then(|| subtle.unchecked_into())
}

/// Lower-case hex, as `sha256sum` and the manifest write it.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `data` (whose copy in wasm memory is `bytes`), in hex.
async fn sha256_hex(data: &Uint8Array, bytes: &[u8], url: &str) -> Result<String, String> {
    let Some(subtle) = subtle() else {
        return Ok(hex(&Sha256::digest(bytes)));
    };
    let promise = subtle
        .digest("SHA-256", data)
        .map_err(|e| js_err(&format!("{url}: SHA-256"), e))?;
    let sum = JsFuture::from(promise)
        .await
        .map_err(|e| js_err(&format!("{url}: SHA-256"), e))?;
    Ok(hex(&Uint8Array::new(&sum).to_vec()))
}

async fn response_array(resp: Response, url: &str) -> Result<Uint8Array, String> {
    if !resp.ok() {
        return Err(format!(
            "{url}: HTTP {} {}",
            resp.status(),
            resp.status_text()
        ));
    }
    let buf = JsFuture::from(resp.array_buffer().map_err(|e| js_err(url, e))?)
        .await
        .map_err(|e| js_err(url, e))?;
    Ok(Uint8Array::new(&buf.unchecked_into::<ArrayBuffer>()))
}

async fn response_bytes(resp: Response, url: &str) -> Result<Vec<u8>, String> {
    Ok(response_array(resp, url).await?.to_vec())
}

async fn fetch(url: &str) -> Result<Response, String> {
    let resp = JsFuture::from(scope().fetch(url))
        .await
        .map_err(|e| js_err(&format!("cannot fetch {url}"), e))?;
    Ok(resp.unchecked_into())
}

/// The manifest at `base/manifest.json` (never cached: it says what the files must be).
pub async fn manifest(base: &str) -> Result<Manifest, String> {
    let url = format!("{base}/manifest.json");
    let bytes = response_bytes(fetch(&url).await?, &url).await?;
    Manifest::parse(&bytes, &url).map_err(|e| e.to_string())
}

/// `data`, copied into wasm memory, once its size and checksum are the manifest's.
async fn check(entry: &FileEntry, data: &Uint8Array, url: &str) -> Result<Vec<u8>, String> {
    if u64::from(data.length()) != entry.bytes {
        return Err(format!(
            "{url}: {} bytes, the manifest says {} (incomplete download?)",
            data.length(),
            entry.bytes
        ));
    }
    let bytes = data.to_vec();
    let sum = sha256_hex(data, &bytes, url).await?;
    if sum != entry.sha256 {
        return Err(format!(
            "{url}: checksum mismatch (sha256 {sum}, the manifest says {})",
            entry.sha256
        ));
    }
    Ok(bytes)
}

/// Where a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// From the Cache API (here or, with `page`, by the page).
    pub cached: bool,
    /// Read by the page while its wasm compiled, and handed over.
    pub page: bool,
}

/// One verified file, and where it came from. `from_page`: the page's copy (`index.html`
/// read it while the wasm compiled) and whether the page read it from the cache; used
/// when it passes the same checks, else the file is loaded here.
pub async fn file(
    base: &str,
    entry: &FileEntry,
    from_page: Option<(Uint8Array, bool)>,
) -> Result<(Vec<u8>, Source), String> {
    let url = format!("{base}/{}", entry.name);
    if let Some((data, cached)) = from_page {
        let t0 = now_ms();
        match check(entry, &data, &url).await {
            Ok(bytes) => {
                log::debug!(
                    "{url}: read by the page (from the {}), checked {:.0} ms",
                    if cached { "cache" } else { "network" },
                    now_ms() - t0
                );
                return Ok((bytes, Source { cached, page: true }));
            }
            Err(e) => log::debug!("{url}: the page's copy is not usable ({e}); loading it"),
        }
    }
    let cache = open_cache().await;
    if let Some(cache) = &cache
        && let Ok(hit) = JsFuture::from(cache.match_with_str(&url)).await
        && !hit.is_undefined()
    {
        let t0 = now_ms();
        let data = response_array(hit.unchecked_into(), &url).await?;
        let t_read = now_ms();
        // A stale or damaged cache entry is dropped and fetched again.
        if let Ok(bytes) = check(entry, &data, &url).await {
            log::debug!(
                "{url}: read from the cache {:.0} ms, checked {:.0} ms",
                t_read - t0,
                now_ms() - t_read
            );
            return Ok((
                bytes,
                Source {
                    cached: true,
                    page: false,
                },
            ));
        }
        let _ = JsFuture::from(cache.delete_with_str(&url)).await;
    }
    let t0 = now_ms();
    let data = response_array(fetch(&url).await?, &url).await?;
    let t_fetched = now_ms();
    let bytes = check(entry, &data, &url).await?;
    log::debug!(
        "{url}: fetched {:.0} ms, checked {:.0} ms",
        t_fetched - t0,
        now_ms() - t_fetched
    );
    // Stored for the next visit in the background: writing 46 MB takes the browser
    // 100-200 ms that the first prediction need not wait for. A write that fails or is cut
    // short by closing the page only means a download next time (entries are checked).
    if let Some(cache) = cache
        && let Ok(resp) = Response::new_with_opt_buffer_source(Some(&data))
    {
        wasm_bindgen_futures::spawn_local(async move {
            let t = now_ms();
            let stored = JsFuture::from(cache.put_with_str(&url, &resp)).await;
            log::debug!(
                "{url}: {} the cache in {:.0} ms",
                if stored.is_ok() {
                    "written to"
                } else {
                    "not written to"
                },
                now_ms() - t
            );
        });
    }
    Ok((
        bytes,
        Source {
            cached: false,
            page: false,
        },
    ))
}
