//! `cargo xtask package-check`: the crates meant for the package registry are packaged and
//! verified as a user of the registry would get them.
//!
//! Checks, in order: each crate's manifest carries the metadata a registry page needs and
//! its README and CHANGELOG exist; its `lib.rs` denies missing docs and is `no_std`; the
//! crates build for the bare-metal target (no `std` sneaks in through a dependency); their
//! doctests pass; rustdoc documents them without a warning; and `cargo package` packages all of them together, building each packaged
//! crate from its `.crate` file against the others' (cargo's local overlay stands in for the
//! registry, so nothing has to be published first). With `--msrv`, each crate is also built
//! and doctested with the oldest Rust its `rust-version` claims.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::builder::workspace_root;

/// The crates other kernels can depend on, in dependency order.
pub const PUBLISHED: &[&str] = &["keel-apic", "keel-iommu", "keel-platform"];

/// Manifest keys every published crate must set (directly or from the workspace).
const REQUIRED_KEYS: &[&str] =
    &["description", "license", "rust-version", "readme", "keywords", "categories"];

/// Keys that would claim something the project does not have (no published home URL).
const FORBIDDEN_KEYS: &[&str] = &["repository", "homepage"];

/// The crate's directory under `crates/` (`keel-apic` -> `crates/apic`).
fn crate_dir(root: &Path, name: &str) -> std::path::PathBuf {
    root.join("crates").join(name.trim_start_matches("keel-"))
}

/// Whether a `[package]` section line sets `key` (`key = ...` or `key.workspace = true`).
fn sets_key(manifest: &str, key: &str) -> bool {
    package_section(manifest).any(|line| {
        line.strip_prefix(key)
            .map(str::trim_start)
            .is_some_and(|rest| rest.starts_with('=') || rest.starts_with(".workspace"))
    })
}

/// The lines of the `[package]` table.
fn package_section(manifest: &str) -> impl Iterator<Item = &str> {
    manifest
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "[package]")
        .skip(1)
        .take_while(|l| !l.starts_with('['))
}

/// What is missing from one crate's sources and manifest (empty when nothing is).
pub fn metadata_problems(name: &str, manifest: &str, lib_rs: &str, files: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for key in REQUIRED_KEYS {
        if !sets_key(manifest, key) {
            problems.push(format!("{name}: Cargo.toml sets no `{key}`"));
        }
    }
    for key in FORBIDDEN_KEYS {
        if sets_key(manifest, key) {
            problems
                .push(format!("{name}: Cargo.toml sets `{key}`, but the project has no home URL"));
        }
    }
    if package_section(manifest).any(|l| l.starts_with("publish") && l.ends_with("false")) {
        problems.push(format!("{name}: Cargo.toml says publish = false"));
    }
    for file in ["README.md", "CHANGELOG.md"] {
        if !files.contains(&file) {
            problems.push(format!("{name}: no {file}"));
        }
    }
    for attr in ["#![deny(missing_docs)]", "no_std"] {
        if !lib_rs
            .lines()
            .any(|l| l.starts_with("#![") && l.contains(attr.trim_start_matches("#![")))
        {
            problems.push(format!("{name}: src/lib.rs lacks {attr}"));
        }
    }
    problems
}

fn run(mut c: Command, what: &str) -> Result<()> {
    eprintln!("xtask: {what}");
    let st = c.status().with_context(|| format!("cannot start {what}"))?;
    if !st.success() {
        bail!("{what} failed ({st})");
    }
    Ok(())
}

fn cargo(root: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root).env_remove("CARGO_ENCODED_RUSTFLAGS").env_remove("RUSTFLAGS");
    c
}

fn with_packages(c: &mut Command) -> &mut Command {
    for name in PUBLISHED {
        c.args(["-p", name]);
    }
    c
}

/// The `rust-version` a manifest declares.
fn rust_version(manifest: &str) -> Option<&str> {
    package_section(manifest)
        .find_map(|l| l.strip_prefix("rust-version"))
        .and_then(|rest| rest.trim_start().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"'))
}

/// The `[workspace.package]` table of the root manifest, verbatim (edition, license,
/// version), for the scratch workspace.
fn workspace_package(root_manifest: &str) -> String {
    let mut out = String::from("[workspace.package]\n");
    for line in root_manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
    {
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Builds each crate and runs its doctests with the toolchain its `rust-version` names
/// (installed through rustup when missing), in a scratch workspace of just these crates:
/// the main workspace's lock file and host tools need a newer cargo. Dev-dependencies on
/// workspace-only helpers are dropped there (only the unit tests use them).
fn check_msrv(root: &Path) -> Result<()> {
    let scratch = root.join("target/package-check/msrv");
    let _ = std::fs::remove_dir_all(&scratch);
    let members: Vec<String> =
        PUBLISHED.iter().map(|n| format!("\"crates/{}\"", n.trim_start_matches("keel-"))).collect();
    let root_manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    std::fs::create_dir_all(&scratch)?;
    std::fs::write(
        scratch.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"2\"\nmembers = [{}]\n\n{}",
            members.join(", "),
            workspace_package(&root_manifest)
        ),
    )?;
    let mut versions = Vec::new();
    for name in PUBLISHED {
        let to = crate_dir(&scratch, name);
        copy_tree(&crate_dir(root, name), &to)?;
        let manifest = std::fs::read_to_string(to.join("Cargo.toml"))?;
        let Some(version) = rust_version(&manifest).map(str::to_string) else {
            bail!("{name}: no rust-version");
        };
        let kept: Vec<&str> = manifest.lines().filter(|l| !l.starts_with("keel-testkit")).collect();
        std::fs::write(to.join("Cargo.toml"), kept.join("\n") + "\n")?;
        versions.push((*name, version));
    }
    for (name, version) in &versions {
        let toolchain = if version.matches('.').count() == 1 {
            format!("{version}.0")
        } else {
            version.clone()
        };
        let mut c = Command::new("rustup");
        c.args(["toolchain", "install", &toolchain, "--profile", "minimal"]);
        run(c, &format!("rustup toolchain install {toolchain} (rust-version of {name})"))?;
        for step in [&["build"][..], &["test", "--doc"][..]] {
            let mut c = Command::new("rustup");
            c.args(["run", &toolchain, "cargo"]).args(step).args(["-p", name, "--offline"]);
            c.current_dir(&scratch);
            for var in [
                "CARGO",
                "RUSTC",
                "RUSTDOC",
                "RUSTC_WRAPPER",
                "CARGO_TARGET_DIR",
                "RUSTUP_TOOLCHAIN",
            ] {
                c.env_remove(var);
            }
            c.env_remove("RUSTFLAGS").env_remove("CARGO_ENCODED_RUSTFLAGS");
            run(c, &format!("{name}: cargo {} with Rust {toolchain}", step.join(" ")))?;
        }
    }
    Ok(())
}

/// Runs every check; `allow_dirty` passes `--allow-dirty` to `cargo package` (a working
/// tree with uncommitted changes); `msrv` also builds each crate with its `rust-version`.
pub fn check(allow_dirty: bool, msrv: bool) -> Result<()> {
    let root = workspace_root();
    let mut problems = Vec::new();
    for name in PUBLISHED {
        let dir = crate_dir(&root, name);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .with_context(|| format!("reading {}", dir.join("Cargo.toml").display()))?;
        let lib_rs = std::fs::read_to_string(dir.join("src/lib.rs"))
            .with_context(|| format!("reading {}", dir.join("src/lib.rs").display()))?;
        let present: Vec<&str> =
            ["README.md", "CHANGELOG.md"].into_iter().filter(|f| dir.join(f).is_file()).collect();
        problems.extend(metadata_problems(name, &manifest, &lib_rs, &present));
    }
    if !problems.is_empty() {
        bail!("package metadata:\n  {}", problems.join("\n  "));
    }
    eprintln!("xtask: metadata of {} complete", PUBLISHED.join(", "));

    let mut c = cargo(&root);
    c.args(["build", "--target", crate::builder::KERNEL_TARGET]);
    c.args(["--target-dir", "target/package-check"]);
    with_packages(&mut c);
    run(c, "no_std build for the bare-metal target")?;

    let mut c = cargo(&root);
    c.args(["test", "--doc"]);
    with_packages(&mut c);
    run(c, "doctests")?;

    let mut c = cargo(&root);
    c.args(["doc", "--no-deps", "--features", "keel-apic/fake"]).env("RUSTDOCFLAGS", "-D warnings");
    with_packages(&mut c);
    run(c, "documentation without warnings (broken intra-doc links fail)")?;

    let mut c = cargo(&root);
    c.arg("package");
    if allow_dirty {
        c.arg("--allow-dirty");
    }
    with_packages(&mut c);
    run(c, "cargo package (each .crate built against the others)")?;

    if msrv {
        check_msrv(&root)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[package]\nname = \"keel-x\"\ndescription = \"x\"\n\
        license.workspace = true\nrust-version = \"1.87\"\nreadme = \"README.md\"\n\
        keywords = [\"a\"]\ncategories = [\"no-std\"]\n\n[dependencies]\nrepository = 1\n";
    const LIB: &str = "//! Docs.\n#![cfg_attr(not(test), no_std)]\n#![deny(missing_docs)]\n";
    const FILES: &[&str] = &["README.md", "CHANGELOG.md"];

    #[test]
    fn rust_version_is_read_from_the_package_table() {
        assert_eq!(rust_version(GOOD), Some("1.87"));
        assert_eq!(
            rust_version("[package]\nname = \"x\"\n[dependencies]\nrust-version = 1\n"),
            None
        );
    }

    #[test]
    fn a_complete_crate_passes() {
        assert_eq!(metadata_problems("keel-x", GOOD, LIB, FILES), Vec::<String>::new());
    }

    #[test]
    fn each_missing_piece_is_named() {
        let no_msrv = GOOD.replace("rust-version = \"1.87\"\n", "");
        assert_eq!(metadata_problems("keel-x", &no_msrv, LIB, FILES).len(), 1);
        let with_url = GOOD.replace("[dependencies]\n", "");
        let p = metadata_problems("keel-x", &with_url, LIB, FILES);
        assert!(p.iter().any(|p| p.contains("repository")), "{p:?}");
        let warn = LIB.replace("deny(missing_docs)", "warn(missing_docs)");
        assert_eq!(metadata_problems("keel-x", GOOD, &warn, FILES).len(), 1);
        assert_eq!(metadata_problems("keel-x", GOOD, LIB, &["README.md"]).len(), 1);
        let private = GOOD.replace("[package]\n", "[package]\npublish = false\n");
        assert_eq!(metadata_problems("keel-x", &private, LIB, FILES).len(), 1);
    }
}
