//! Loading a model bundle (`core-train export`) over HTTP: the manifest first, then every
//! file it lists, each checked against its size and sha256. Files come from the Cache API
//! when a previous visit stored them (a reload is instant), otherwise from the network,
//! and are cached once verified. URLs are relative to the page, so the site works from
//! any sub-path. Runs in the model's worker ([`crate::worker`]), which has `fetch` and the
//! Cache API as the page has.

use js_sys::{ArrayBuffer, Uint8Array};
pub use polytask_core::io::manifest::{FileEntry, Manifest};
use sha2::{Digest, Sha256};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Response};

use super::scope;

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

async fn response_bytes(resp: Response, url: &str) -> Result<Vec<u8>, String> {
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
    Ok(Uint8Array::new(&buf.unchecked_into::<ArrayBuffer>()).to_vec())
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

fn check(entry: &FileEntry, bytes: &[u8], url: &str) -> Result<(), String> {
    if bytes.len() as u64 != entry.bytes {
        return Err(format!(
            "{url}: {} bytes, the manifest says {} (incomplete download?)",
            bytes.len(),
            entry.bytes
        ));
    }
    let sum = format!("{:x}", Sha256::digest(bytes));
    if sum != entry.sha256 {
        return Err(format!(
            "{url}: checksum mismatch (sha256 {sum}, the manifest says {})",
            entry.sha256
        ));
    }
    Ok(())
}

/// One verified file, and whether it came from the cache.
pub async fn file(base: &str, entry: &FileEntry) -> Result<(Vec<u8>, bool), String> {
    let url = format!("{base}/{}", entry.name);
    let cache = open_cache().await;
    if let Some(cache) = &cache
        && let Ok(hit) = JsFuture::from(cache.match_with_str(&url)).await
        && !hit.is_undefined()
    {
        let bytes = response_bytes(hit.unchecked_into(), &url).await?;
        // A stale or damaged cache entry is dropped and fetched again.
        if check(entry, &bytes, &url).is_ok() {
            return Ok((bytes, true));
        }
        let _ = JsFuture::from(cache.delete_with_str(&url)).await;
    }
    let bytes = response_bytes(fetch(&url).await?, &url).await?;
    check(entry, &bytes, &url)?;
    if let Some(cache) = &cache {
        let body = Uint8Array::from(bytes.as_slice());
        if let Ok(resp) = Response::new_with_opt_buffer_source(Some(&body)) {
            let _ = JsFuture::from(cache.put_with_str(&url, &resp)).await;
        }
    }
    Ok((bytes, false))
}
