//! Building what gets booted (kernel and user programs) and running the host
//! unit tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const KERNEL_TARGET: &str = "x86_64-unknown-none";
const KERNEL_PACKAGE: &str = "keel-kernel";
/// The kernel's lower layer (`framework/`): bare metal only, built as the kernel's dependency.
const FRAMEWORK_PACKAGE: &str = "keel-framework";
const KERNEL_RUSTFLAGS: &str = "-C code-model=kernel -C relocation-model=static";

/// Workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent dir").to_path_buf()
}

/// The bootable images: the kernel's two (one crate, one target dir: cargo keeps each
/// feature set's build apart, so switching costs no rebuild, but copies whichever it built
/// last to the same `release/keel`, so each build is copied out to its own name at once) and
/// the example kernel under `examples/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Image {
    /// No proof scenarios: boots, reports, runs the boot manifest's programs. What `make run`
    /// and `make iso`'s default entry boot, and the release image.
    Plain,
    /// Built with the kernel's `scenarios` feature: `proof=<name>` runs a scenario. What the
    /// proofs boot.
    Scenarios,
    /// `examples/minimal-smp`: another kernel built on keel-apic and keel-platform alone.
    Example,
}

impl Image {
    /// Where the image is copied after its build: `target/kernel/keel[-scenarios]`.
    pub fn path_under(self, target: &Path) -> PathBuf {
        target.join("kernel").join(self.file_name())
    }
    /// The file name (also its name on an ISO under `/boot/`).
    pub fn file_name(self) -> &'static str {
        match self {
            Image::Plain => "keel",
            Image::Scenarios => "keel-scenarios",
            Image::Example => "example-minimal-smp",
        }
    }
    /// `KEEL_KERNEL` replaces the scenarios image, `KEEL_PLAIN_KERNEL` the plain one,
    /// `KEEL_EXAMPLE_KERNEL` the example.
    fn override_var(self) -> &'static str {
        match self {
            Image::Plain => "KEEL_PLAIN_KERNEL",
            Image::Scenarios => "KEEL_KERNEL",
            Image::Example => "KEEL_EXAMPLE_KERNEL",
        }
    }
    /// The `--image` name.
    pub fn from_name(name: &str) -> Option<Image> {
        match name {
            "plain" => Some(Image::Plain),
            "scenarios" => Some(Image::Scenarios),
            "example" => Some(Image::Example),
            _ => None,
        }
    }
}

/// Everything a boot needs besides QEMU.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// The scenarios image (what proofs boot).
    pub kernel: PathBuf,
    /// The plain image (no scenarios compiled in).
    pub plain_kernel: PathBuf,
    /// The example kernel (`examples/minimal-smp`).
    pub example_kernel: PathBuf,
    /// Where user ELFs live (`target/user/.../release` or `KEEL_USER_DIR`); proofs
    /// pick their Multiboot modules from here.
    pub user_dir: PathBuf,
}

/// Separate target dir: user programs need different RUSTFLAGS from the kernel, and
/// sharing one dir would rebuild `core` on every switch.
const USER_TARGET_DIR: &str = "target/user";
const USER_RUSTFLAGS: &str = "-C relocation-model=static";
/// The runtime library under `user/`, never a program itself.
const USER_RT_DIR: &str = "rt";

/// Where `build_user_programs` puts the ELFs.
pub fn default_user_dir() -> PathBuf {
    workspace_root().join(USER_TARGET_DIR).join(KERNEL_TARGET).join("release")
}

/// `KEEL_USER_DIR=<dir>` boots prebuilt user ELFs from `<dir>` and skips the user build.
pub fn user_dir_override() -> Option<PathBuf> {
    let d = PathBuf::from(std::env::var_os("KEEL_USER_DIR").filter(|v| !v.is_empty())?);
    Some(std::path::absolute(&d).unwrap_or(d))
}

/// `name = "..."` from the `[package]` table, by line scan (no TOML dependency for one key).
fn package_name(cargo_toml: &str) -> Option<String> {
    let mut in_package = false;
    for line in cargo_toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "name" {
                    return Some(v.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    None
}

/// User binaries (= package names) under `<root>/user/*/`: every crate except `user/rt`
/// whose `Cargo.toml` has a `[[bin]]` table or that has `src/main.rs`. Sorted by name.
/// `None` when `user/` does not exist (nothing to build or validate yet).
pub fn discover_user_programs(root: &Path) -> Result<Option<Vec<String>>> {
    let user = root.join("user");
    if !user.is_dir() {
        return Ok(None);
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&user).with_context(|| format!("reading {}", user.display()))? {
        let dir = entry?.path();
        if dir.file_name().is_some_and(|n| n == USER_RT_DIR) {
            continue;
        }
        let Ok(toml) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let is_bin =
            toml.lines().any(|l| l.trim() == "[[bin]]") || dir.join("src/main.rs").is_file();
        if is_bin {
            let dir_name =
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            names.push(package_name(&toml).unwrap_or(dir_name));
        }
    }
    names.sort();
    Ok(Some(names))
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
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace_root())
        .output()
    else {
        return Ok(());
    };
    if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == KERNEL_TARGET) {
        return Ok(());
    }
    let mut c = Command::new("rustup");
    c.args(["target", "add", KERNEL_TARGET]).current_dir(workspace_root());
    check(c, "rustup target add")
}

/// A prebuilt kernel for `image` (`KEEL_KERNEL` / `KEEL_PLAIN_KERNEL`) that skips its build.
pub fn kernel_override(image: Image) -> Option<PathBuf> {
    std::env::var_os(image.override_var()).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The example kernel: its own package, target dir and flags (identity-mapped at 1 MiB, so
/// the default code model, not the kernel's).
const EXAMPLE_PACKAGE: &str = "keel-example-minimal-smp";
const EXAMPLE_BIN: &str = "minimal-smp";
const EXAMPLE_TARGET_DIR: &str = "target/example";
const EXAMPLE_RUSTFLAGS: &str = "-C relocation-model=static";

fn build_example() -> Result<PathBuf> {
    let root = workspace_root();
    let mut c = cargo();
    c.args(["build", "--package", EXAMPLE_PACKAGE, "--target", KERNEL_TARGET, "--release"])
        .args(["--target-dir", EXAMPLE_TARGET_DIR])
        .env("RUSTFLAGS", EXAMPLE_RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    check(c, "example kernel build")?;
    let elf = root.join(EXAMPLE_TARGET_DIR).join(KERNEL_TARGET).join("release").join(EXAMPLE_BIN);
    let out = Image::Example.path_under(&root.join("target"));
    std::fs::create_dir_all(out.parent().expect("under target/kernel"))?;
    std::fs::copy(&elf, &out)
        .with_context(|| format!("copying {} to {}", elf.display(), out.display()))?;
    Ok(out)
}

/// Builds `image` and copies it to [`Image::path_under`] `target/`.
pub fn build_kernel(image: Image) -> Result<PathBuf> {
    ensure_target()?;
    if image == Image::Example {
        return build_example();
    }
    let root = workspace_root();
    let mut c = cargo();
    c.args([
        "build",
        "--package",
        KERNEL_PACKAGE,
        "--target",
        KERNEL_TARGET,
        "--release",
        "--target-dir",
        "target/kernel",
    ])
    .env("RUSTFLAGS", KERNEL_RUSTFLAGS)
    // Would take precedence over RUSTFLAGS (set when we run under `cargo run`).
    .env_remove("CARGO_ENCODED_RUSTFLAGS");
    if image == Image::Scenarios {
        c.args(["--features", "scenarios"]);
    }
    check(c, &format!("kernel build ({})", image.file_name()))?;
    let elf = root.join("target/kernel").join(KERNEL_TARGET).join("release/keel");
    if !elf.is_file() {
        bail!("kernel build succeeded but {} is missing", elf.display());
    }
    let out = image.path_under(&root.join("target"));
    std::fs::copy(&elf, &out)
        .with_context(|| format!("copying {} to {}", elf.display(), out.display()))?;
    Ok(out)
}

/// Build every discovered user program for bare metal; returns the ELF directory.
/// `KEEL_USER_DIR` skips the build.
pub fn build_user_programs() -> Result<PathBuf> {
    if let Some(d) = user_dir_override() {
        eprintln!("xtask: KEEL_USER_DIR={} (not building user programs)", d.display());
        return Ok(d);
    }
    let dir = default_user_dir();
    let Some(names) = discover_user_programs(&workspace_root())? else { return Ok(dir) };
    if names.is_empty() {
        return Ok(dir);
    }
    ensure_target()?;
    let mut c = cargo();
    c.args(["build", "--release", "--target", KERNEL_TARGET, "--target-dir", USER_TARGET_DIR])
        .env("RUSTFLAGS", USER_RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    for n in &names {
        c.args(["-p", n]);
    }
    check(c, &format!("user program build ({})", names.join(", ")))?;
    for n in &names {
        if !dir.join(n).is_file() {
            bail!(
                "user build succeeded but {} is missing (binary named unlike its package?)",
                dir.join(n).display()
            );
        }
    }
    Ok(dir)
}

/// The kernel `images` (each built unless overridden; an image not asked for is only named,
/// at its usual path) plus, when `with_user` (some selected proof boots programs), user
/// programs; otherwise the user build is skipped so kernel-only proofs don't wait on it.
pub fn build_all(with_user: bool, images: &[Image]) -> Result<Artifacts> {
    let target = workspace_root().join("target");
    // The plain image last: `release/keel` then holds the image a plain `cargo build` makes.
    let mut paths = Vec::new();
    for image in [Image::Scenarios, Image::Example, Image::Plain] {
        let path = match kernel_override(image) {
            Some(k) => {
                eprintln!("xtask: {}={} (not building)", image.override_var(), k.display());
                k
            }
            None if images.contains(&image) => build_kernel(image)?,
            None => image.path_under(&target),
        };
        paths.push(path);
    }
    let plain_kernel = paths.pop().expect("three images");
    let example_kernel = paths.pop().expect("three images");
    let kernel = paths.pop().expect("three images");
    let user_dir = if with_user {
        build_user_programs()?
    } else {
        user_dir_override().unwrap_or_else(default_user_dir)
    };
    Ok(Artifacts { kernel, plain_kernel, example_kernel, user_dir })
}

/// Host unit tests of every crate except the kernels and the framework (which only build
/// for bare metal). Output streams to the terminal.
/// User crates are bare-metal too (`no_std`, own entry point), so they are excluded
/// like the kernel.
pub fn host_tests() -> Result<()> {
    let root = workspace_root();
    let mut excluded = vec![
        KERNEL_PACKAGE.to_string(),
        FRAMEWORK_PACKAGE.to_string(),
        EXAMPLE_PACKAGE.to_string(),
    ];
    excluded.extend(discover_user_programs(&root)?.unwrap_or_default());
    let rt = std::fs::read_to_string(root.join("user").join(USER_RT_DIR).join("Cargo.toml")).ok();
    excluded.extend(rt.as_deref().and_then(package_name));
    let mut c = cargo();
    c.args(["test", "--workspace"]).env_remove("CARGO_ENCODED_RUSTFLAGS");
    for p in &excluded {
        c.args(["--exclude", p]);
    }
    check(
        c,
        &format!(
            "host unit tests (cargo test --workspace --exclude {})",
            excluded.join(" --exclude ")
        ),
    )
}

/// Clippy with warnings denied over everything the project builds, each part with the target
/// and flags its build uses: the host crates (tests included), the kernel and its framework with and without
/// the scenarios, the user programs and the example kernel for bare metal.
pub fn clippy() -> Result<()> {
    ensure_target()?;
    let deny = ["--", "-D", "warnings"];
    let mut host = cargo();
    host.args(["clippy", "--workspace", "--all-targets"])
        .args(["--exclude", KERNEL_PACKAGE, "--exclude", FRAMEWORK_PACKAGE])
        .args(["--exclude", EXAMPLE_PACKAGE])
        .args(deny)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    check(host, "clippy (host crates)")?;
    for features in ["", "scenarios"] {
        let mut c = cargo();
        c.args(["clippy", "--package", KERNEL_PACKAGE, "--package", FRAMEWORK_PACKAGE])
            .args(["--target", KERNEL_TARGET, "--release"])
            .args(["--target-dir", "target/kernel", "--features", features])
            .args(deny)
            .env("RUSTFLAGS", KERNEL_RUSTFLAGS)
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        check(c, &format!("clippy (kernel and framework, features {features:?})"))?;
    }
    if let Some(names) = discover_user_programs(&workspace_root())? {
        let mut c = cargo();
        c.args(["clippy", "--release", "--target", KERNEL_TARGET, "--target-dir", USER_TARGET_DIR])
            .env("RUSTFLAGS", USER_RUSTFLAGS)
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        for n in &names {
            c.args(["-p", n]);
        }
        c.args(deny);
        check(c, "clippy (user programs)")?;
    }
    let mut example = cargo();
    example
        .args(["clippy", "--package", EXAMPLE_PACKAGE, "--target", KERNEL_TARGET, "--release"])
        .args(["--target-dir", EXAMPLE_TARGET_DIR])
        .args(deny)
        .env("RUSTFLAGS", EXAMPLE_RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    check(example, "clippy (example kernel)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_user_binaries() {
        let root = std::env::temp_dir().join(format!("xtask-test-{}-user", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(discover_user_programs(&root).unwrap(), None, "no user/ dir");
        let add = |dir: &str, toml: &str, main: bool| {
            let d = root.join("user").join(dir);
            std::fs::create_dir_all(d.join("src")).unwrap();
            std::fs::write(d.join("Cargo.toml"), toml).unwrap();
            if main {
                std::fs::write(d.join("src/main.rs"), "").unwrap();
            }
        };
        add("rt", "[package]\nname = \"keel-rt\"\n[[bin]]\nname = \"x\"\n", true);
        add("edu", "[package]\nname = \"edu-driver\"\nversion = \"0.1.0\"\n", true);
        add("rtc-driver", "[package]\nname=\"rtc-driver\"\n\n[[bin]]\nname = \"rtc-driver\"\npath = \"src/rtc.rs\"\n", false);
        add("lib-only", "[package]\nname = \"helper\"\n[lib]\n", false);
        std::fs::create_dir_all(root.join("user/not-a-crate")).unwrap();
        assert_eq!(discover_user_programs(&root).unwrap().unwrap(), ["edu-driver", "rtc-driver"]);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn package_name_only_from_package_table() {
        assert_eq!(
            package_name("[dependencies]\nname = \"no\"\n[package]\nname = \"yes\"\n").as_deref(),
            Some("yes")
        );
        assert_eq!(package_name("[lib]\nname = \"x\"\n"), None);
    }
}
