//! Places the `.keel_top` section (see `src/attacks.rs`) on the last page of user space
//! (`top.ld`), so the instruction at its end returns to the first non-canonical address.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/top.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=top.ld");
}
