//! Building what gets booted (kernel now, user programs later) and running
//! the host unit tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const KERNEL_TARGET: &str = "x86_64-unknown-none";
const KERNEL_PACKAGE: &str = "keel-kernel";
const KERNEL_RUSTFLAGS: &str = "-C code-model=kernel -C relocation-model=static";

/// Workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent dir").to_path_buf()
}

/// Everything a boot needs besides QEMU.
#[derive(Clone, Debug)]
pub struct Artifacts {
    pub kernel: PathBuf,
    /// Multiboot modules for `-initrd` (user programs); empty for now.
    pub modules: Vec<PathBuf>,
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn check(mut c: Command, what: &str) -> Result<()> {
    let st = c.status().with_context(|| format!("cannot start {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

/// `rustup target add x86_64-unknown-none` if missing (no-op without rustup:
/// then the toolchain is someone else's business).
fn ensure_target() -> Result<()> {
    let Ok(out) = Command::new("rustup").args(["target", "list", "--installed"]).current_dir(workspace_root()).output() else {
        return Ok(());
    };
    if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == KERNEL_TARGET) {
        return Ok(());
    }
    let mut c = Command::new("rustup");
    c.args(["target", "add", KERNEL_TARGET]).current_dir(workspace_root());
    check(c, "rustup target add")
}

/// `KEEL_KERNEL=<elf>` boots a prebuilt kernel and skips the build.
pub fn kernel_override() -> Option<PathBuf> {
    std::env::var_os("KEEL_KERNEL").filter(|v| !v.is_empty()).map(PathBuf::from)
}

pub fn build_kernel() -> Result<PathBuf> {
    ensure_target()?;
    let root = workspace_root();
    let mut c = cargo();
    c.args(["build", "--package", KERNEL_PACKAGE, "--target", KERNEL_TARGET, "--release", "--target-dir", "target/kernel"])
        .env("RUSTFLAGS", KERNEL_RUSTFLAGS)
        // Would take precedence over RUSTFLAGS (set when we run under `cargo run`).
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    check(c, "kernel build")?;
    let elf = root.join("target/kernel").join(KERNEL_TARGET).join("release/keel");
    if !elf.is_file() {
        bail!("kernel build succeeded but {} is missing", elf.display());
    }
    Ok(elf)
}

/// User programs, booted as Multiboot modules. Nothing yet: when they exist,
/// build them here (their own target/flags) and return their paths in the
/// order the kernel expects them.
pub fn build_user_programs() -> Result<Vec<PathBuf>> {
    Ok(Vec::new())
}

pub fn build_all() -> Result<Artifacts> {
    let kernel = match kernel_override() {
        Some(k) => {
            eprintln!("xtask: KEEL_KERNEL={} (not building)", k.display());
            k
        }
        None => build_kernel()?,
    };
    Ok(Artifacts { kernel, modules: build_user_programs()? })
}

/// Host unit tests of every crate except the kernel (which only builds for
/// bare metal). Output streams to the terminal.
pub fn host_tests() -> Result<()> {
    let mut c = cargo();
    c.args(["test", "--workspace", "--exclude", KERNEL_PACKAGE]).env_remove("CARGO_ENCODED_RUSTFLAGS");
    check(c, "host unit tests (cargo test --workspace --exclude keel-kernel)")
}
