//! Places the `.keel_top` section (see `src/attacks.rs`) on the last page of user space
//! (`top.ld`), so the instruction at its end returns to the first non-canonical address.
fn main() {
    // Shared by `attack-iret` (its `build` key points here): the script is next to this file.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&dir).join("../attack/top.ld");
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", script.display());
}
