//! Exports `__wasm_call_ctors` from the page's wasm. wasm-ld wraps every exported function
//! of a module whose constructors are not exported in a `NAME.command_export` that runs
//! them first (a call from `main` alone did not stop it), so each call from JavaScript into
//! the module (a closure the browser calls back, a value handed over) ran cubecl's
//! `inventory` registrations again, tens of ms at a time. With the export the exports stay
//! as they are, and `main` runs the constructors once.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo::rustc-link-arg=--export=__wasm_call_ctors");
    }
}
