//! Make sure a usable QEMU (>= 9.0) exists; install it on Debian/Ubuntu when
//! we are root, otherwise say exactly what to run. Runs before build/run/test
//! so a fresh CI machine needs no manual step.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::qemu::QEMU_BIN;

const MIN: (u32, u32) = (9, 0);
const DEBIAN_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";
const APT_INSTALL: &[&str] = &["install", "-y", "--no-install-recommends"];

/// `(major, minor)` from `QEMU emulator version 10.0.2 (Debian ...)`.
pub fn parse_qemu_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("version ")? + "version ".len()..];
    let ver = rest.split_whitespace().next()?;
    let mut it = ver.split('.').map(|p| p.parse::<u32>().ok());
    Some((it.next()??, it.next().flatten().unwrap_or(0)))
}

/// Major version of a Debian package version like `1:9.2.1+ds-1`.
pub fn parse_deb_major(v: &str) -> Option<u32> {
    let v = v.split_once(':').map_or(v, |(_, r)| r);
    v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `Candidate:` from `apt-cache policy` output.
pub fn parse_apt_candidate(policy: &str) -> Option<&str> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| *v != "(none)")
}

/// A field of `/etc/os-release`, unquoted.
pub fn os_release_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().trim_matches('"'))
}

/// A deb822 field including continuation lines (Signed-By may embed a key).
fn deb822_field(stanza: &str, name: &str) -> Option<String> {
    let mut lines = stanza.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(v) = l.strip_prefix(name).and_then(|r| r.strip_prefix(':')) {
            let mut out = v.trim().to_string();
            while let Some(cont) =
                lines.peek().filter(|c| c.starts_with(' ') || c.starts_with('\t'))
            {
                out.push('\n');
                out.push_str(cont);
                lines.next();
            }
            return Some(out);
        }
    }
    None
}

/// The backports source, copying `URIs:` and `Signed-By:` from the stanza of
/// `debian.sources` that serves `codename` itself.
pub fn backports_source(debian_sources: &str, codename: &str) -> Result<String> {
    let stanza = debian_sources
        .split("\n\n")
        .find(|s| {
            deb822_field(s, "Suites").is_some_and(|v| v.split_whitespace().any(|x| x == codename))
        })
        .with_context(|| format!("no stanza with Suites: {codename} in {DEBIAN_SOURCES}"))?;
    let uris = deb822_field(stanza, "URIs").context("Debian stanza has no URIs:")?;
    let mut out =
        format!("Types: deb\nURIs: {uris}\nSuites: {codename}-backports\nComponents: main\n");
    if let Some(sb) = deb822_field(stanza, "Signed-By") {
        out.push_str(&format!("Signed-By: {sb}\n"));
    }
    Ok(out)
}

fn installed_version() -> Option<(u32, u32)> {
    let out = Command::new(QEMU_BIN).arg("--version").output().ok()?;
    parse_qemu_version(&String::from_utf8_lossy(&out.stdout))
}

fn run(cmd: &str, args: &[&str]) -> Result<()> {
    eprintln!("xtask: running {cmd} {}", args.join(" "));
    let st = Command::new(cmd)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("cannot run {cmd}"))?;
    if !st.success() {
        bail!("{cmd} {} failed ({st})", args.join(" "));
    }
    Ok(())
}

fn manual_steps(codename: Option<&str>) -> String {
    match codename {
        Some("bookworm") => format!(
            "as root: create {BACKPORTS_SOURCES} (Types: deb, URIs/Signed-By copied from the Debian entry in {DEBIAN_SOURCES}, \
             Suites: bookworm-backports, Components: main), then\n  \
             apt-get update && apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86\n\
             (or simply run `sudo cargo xtask qemu-check`)"
        ),
        _ => "as root: apt-get update && apt-get install -y --no-install-recommends qemu-system-x86 \
              (needs QEMU >= 9.0; on other systems install qemu-system-x86_64 >= 9.0 from your package manager)"
            .into(),
    }
}

/// Ensure `qemu-system-x86_64` >= 9.0; `KEEL_QEMU` (a custom binary) skips this.
pub fn ensure_qemu() -> Result<()> {
    if std::env::var_os("KEEL_QEMU").is_some() {
        return Ok(());
    }
    let have = installed_version();
    if have.is_some_and(|v| v >= MIN) {
        return Ok(());
    }
    let what = match have {
        Some((a, b)) => format!("{QEMU_BIN} {a}.{b} is older than {}.{}", MIN.0, MIN.1),
        None => format!("{QEMU_BIN} not found"),
    };
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let id = os_release_field(&os, "ID").unwrap_or("");
    let like = os_release_field(&os, "ID_LIKE").unwrap_or("");
    let codename = os_release_field(&os, "VERSION_CODENAME");
    let debianish = ["debian", "ubuntu"].contains(&id)
        || like.split_whitespace().any(|l| l == "debian" || l == "ubuntu");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !(root && debianish && Path::new("/usr/bin/apt-get").exists()) {
        bail!("{what}; install it:\n  {}", manual_steps(codename));
    }
    eprintln!("xtask: {what}; installing QEMU");
    if id == "debian" && codename == Some("bookworm") {
        if !Path::new(BACKPORTS_SOURCES).exists() {
            let src = std::fs::read_to_string(DEBIAN_SOURCES)
                .with_context(|| format!("reading {DEBIAN_SOURCES}"))?;
            std::fs::write(BACKPORTS_SOURCES, backports_source(&src, "bookworm")?)
                .with_context(|| format!("writing {BACKPORTS_SOURCES}"))?;
        }
        run("apt-get", &["update"])?;
        run("apt-get", &[APT_INSTALL, &["-t", "bookworm-backports", "qemu-system-x86"]].concat())?;
    } else {
        run("apt-get", &["update"])?;
        let policy = Command::new("apt-cache").args(["policy", "qemu-system-x86"]).output()?;
        let policy = String::from_utf8_lossy(&policy.stdout);
        match parse_apt_candidate(&policy) {
            Some(v) if parse_deb_major(v).is_some_and(|m| m >= MIN.0) => {
                run("apt-get", &[APT_INSTALL, &["qemu-system-x86"]].concat())?;
            }
            cand => bail!(
                "{what}, and this release only offers qemu-system-x86 {}; install QEMU >= {}.{} by other means",
                cand.unwrap_or("(none)"),
                MIN.0,
                MIN.1
            ),
        }
    }
    match installed_version() {
        Some(v) if v >= MIN => Ok(()),
        v => bail!("after installing, {QEMU_BIN} reports {v:?}; need >= {}.{}", MIN.0, MIN.1),
    }
}

/// Makes sure the files `needed` (path, Debian package that ships it) exist; installs the
/// missing packages with apt-get when run as root on Debian/Ubuntu, otherwise says what to run.
pub fn ensure_debian_files(needed: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> =
        needed.iter().filter(|(path, _)| !Path::new(path).exists()).map(|&(_, pkg)| pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages = missing.clone();
    packages.dedup();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !(root && Path::new("/usr/bin/apt-get").exists()) {
        bail!(
            "missing packages; install them:
  apt-get install -y --no-install-recommends {}",
            packages.join(" ")
        );
    }
    eprintln!("xtask: installing {}", packages.join(" "));
    run("apt-get", &["update", "-q"])?;
    run("apt-get", &[APT_INSTALL, &packages].concat())?;
    match needed.iter().find(|(path, _)| !Path::new(path).exists()) {
        Some((path, pkg)) => bail!("after installing {pkg}, {path} is still missing"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_versions() {
        let s = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright";
        assert_eq!(parse_qemu_version(s), Some((10, 0)));
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u7)"),
            Some((7, 2))
        );
        assert_eq!(parse_qemu_version("QEMU emulator version 9"), Some((9, 0)));
        assert_eq!(parse_qemu_version("garbage"), None);
        assert!(Some((7, 2)) < Some(MIN) && Some((9, 2)) >= Some(MIN) && (10, 0) >= MIN);
    }

    #[test]
    fn deb_versions() {
        assert_eq!(parse_deb_major("1:9.2.1+ds-1"), Some(9));
        assert_eq!(parse_deb_major("1:7.2+dfsg-7+deb12u7"), Some(7));
        assert_eq!(parse_deb_major("10.0.2"), Some(10));
        let policy = "qemu-system-x86:\n  Installed: (none)\n  Candidate: 1:8.2.2+ds-0ubuntu1\n";
        assert_eq!(parse_apt_candidate(policy), Some("1:8.2.2+ds-0ubuntu1"));
        assert_eq!(parse_apt_candidate("  Candidate: (none)\n"), None);
    }

    #[test]
    fn os_release() {
        let os = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
        assert_eq!(os_release_field(os, "ID"), Some("debian"));
        assert_eq!(os_release_field(os, "VERSION_CODENAME"), Some("bookworm"));
        assert_eq!(os_release_field(os, "ID_LIKE"), None);
    }

    #[test]
    fn backports_stanza() {
        let src = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\
                   Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
                   Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n\
                   Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
        assert_eq!(
            backports_source(src, "bookworm").unwrap(),
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        assert!(backports_source(src, "trixie").is_err());
    }

    #[test]
    fn backports_inline_key_kept() {
        let src = "Types: deb\nURIs: http://m/debian\nSuites: bookworm\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\nComponents: main\n";
        let out = backports_source(src, "bookworm").unwrap();
        assert!(
            out.ends_with("Signed-By: \n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n"),
            "{out}"
        );
    }
}
