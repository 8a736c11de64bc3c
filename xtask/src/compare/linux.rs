//! The Linux guest: Debian's cloud kernel and busybox-static (fetched with apt), the
//! `kbench` programs (built here with gcc -static), and an initramfs assembled in Rust.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::cpio::Cpio;

/// The kernel meta-package whose dependency names the concrete image, and the suite it is
/// taken from: bookworm-backports carries the 6.12 cloud kernel (bookworm itself has 6.1).
const KERNEL_META: &str = "linux-image-cloud-amd64";
const KERNEL_SUITE: &str = "bookworm-backports";
/// The unsigned image has the same kernel without the signature (and no shim dependencies).
const UNSIGNED_SUFFIX: &str = "-unsigned";
const BUSYBOX: &str = "busybox-static";
/// Host tools the build needs: `gcc` for the static kbench, `apt-get`/`dpkg-deb` to unpack.
const HOST_PACKAGES: &[&str] = &["gcc", "libc6-dev"];

pub struct Guest {
    pub vmlinuz: PathBuf,
    pub initramfs: PathBuf,
    /// e.g. `linux-image-6.12.95+deb12-cloud-amd64-unsigned 6.12.95-1~bpo12+1`.
    pub kernel_package: String,
    pub busybox_package: String,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The concrete `linux-image-*` package the meta-package depends on.
pub fn parse_kernel_dependency(depends: &str) -> Option<String> {
    depends.lines().find_map(|l| {
        let d = l.trim().strip_prefix("Depends:")?.trim();
        d.starts_with("linux-image-").then(|| d.split_whitespace().next().unwrap().to_string())
    })
}

/// Host tools first (gcc), then download and unpack the two Debian packages into `dir`.
pub fn prepare(root: &Path, dir: &Path) -> Result<Guest> {
    let missing_tools = !have("gcc") || !have("dpkg-deb") || !have("apt-get");
    if missing_tools {
        if !is_root() {
            bail!("bench-compare needs gcc and apt; run as root, or first: sudo apt-get install -y {}", HOST_PACKAGES.join(" "));
        }
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(HOST_PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    let debs = dir.join("debs");
    std::fs::create_dir_all(&debs)?;
    let meta = format!("{KERNEL_META}/{KERNEL_SUITE}");
    let mut depends = run(Command::new("apt-cache").args(["depends", &meta])).unwrap_or_default();
    if parse_kernel_dependency(&depends).is_none() {
        if !is_root() {
            bail!("apt-cache does not know {meta}; add {KERNEL_SUITE} to the apt sources and run: sudo apt-get update");
        }
        run(Command::new("apt-get").arg("update"))?;
        depends = run(Command::new("apt-cache").args(["depends", &meta]))?;
    }
    let signed = parse_kernel_dependency(&depends)
        .with_context(|| format!("no linux-image dependency in `apt-cache depends {meta}`"))?;
    let kernel_pkg = format!("{signed}{UNSIGNED_SUFFIX}");
    let version = |p: &str| -> String {
        run(Command::new("apt-cache").args(["policy", p]))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.trim().strip_prefix("Candidate:").map(|v| v.trim().to_string()))
            })
            .unwrap_or_else(|| "?".into())
    };
    let mut debfiles = Vec::new();
    for pkg in [kernel_pkg.as_str(), BUSYBOX] {
        let have_deb = |d: &Path| -> Option<PathBuf> {
            std::fs::read_dir(d).ok()?.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
            })
        };
        let deb = match have_deb(&debs) {
            Some(d) => d,
            None => {
                println!("xtask: apt-get download {pkg}");
                run(Command::new("apt-get").args(["download", pkg]).current_dir(&debs))
                    .with_context(|| format!("cannot download {pkg}; try: apt-get update && (cd {} && apt-get download {pkg})", debs.display()))?;
                have_deb(&debs).with_context(|| format!("apt-get download {pkg} left no .deb"))?
            }
        };
        debfiles.push(deb);
    }
    let unpacked = dir.join("root");
    for deb in &debfiles {
        let stamp =
            unpacked.join(format!(".unpacked-{}", deb.file_name().unwrap().to_string_lossy()));
        if !stamp.exists() {
            std::fs::create_dir_all(&unpacked)?;
            run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked))?;
            std::fs::write(&stamp, "")?;
        }
    }
    let release = signed.strip_prefix("linux-image-").unwrap_or(&signed).to_string();
    let vmlinuz = unpacked.join(format!("boot/vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        bail!("{} missing after unpacking {kernel_pkg}", vmlinuz.display());
    }
    let kbench = dir.join("kbench");
    let src = root.join("bench/linux/kbench.c");
    run(Command::new("gcc")
        .args(["-O2", "-static", "-Wall", "-o"])
        .arg(&kbench)
        .arg(&src)
        .arg(root.join("bench/linux/kbench_nvme.c"))
        .arg("-lpthread"))
    .context("building bench/linux/kbench.c (static; needs libc6-dev)")?;
    let initramfs = dir.join("initramfs.cpio");
    let mut c = Cpio::default();
    for d in ["bin", "sbin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"] {
        c.dir(d);
    }
    c.file("init", 0o755, &std::fs::read(root.join("bench/linux/init"))?);
    c.file("bin/busybox", 0o755, &std::fs::read(unpacked.join("bin/busybox"))?);
    c.file("bin/kbench", 0o755, &std::fs::read(&kbench)?);
    let moddir = unpacked.join(format!("lib/modules/{release}/kernel/drivers/uio"));
    for m in ["uio", "uio_pci_generic"] {
        c.file(&format!("lib/modules/{m}.ko"), 0o644, &read_module(&moddir, m)?);
    }
    std::fs::write(&initramfs, c.finish())?;
    Ok(Guest {
        vmlinuz,
        initramfs,
        kernel_package: format!("{kernel_pkg} {}", version(&kernel_pkg)),
        busybox_package: format!("{BUSYBOX} {}", version(BUSYBOX)),
    })
}

/// `<m>.ko`, or `<m>.ko.xz` decompressed on the host (busybox insmod cannot).
fn read_module(dir: &Path, m: &str) -> Result<Vec<u8>> {
    let plain = dir.join(format!("{m}.ko"));
    if plain.is_file() {
        return Ok(std::fs::read(plain)?);
    }
    let xz = dir.join(format!("{m}.ko.xz"));
    if xz.is_file() {
        let out = Command::new("xz").arg("-dc").arg(&xz).output().context("xz")?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        bail!("xz -dc {} failed", xz.display());
    }
    bail!("module {m} not found under {}", dir.display())
}

#[cfg(test)]
mod tests {
    #[test]
    fn kernel_dependency() {
        let d = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            super::parse_kernel_dependency(d).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(super::parse_kernel_dependency("x\n  Depends: foo\n"), None);
    }
}
