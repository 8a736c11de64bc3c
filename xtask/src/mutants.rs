//! `cargo xtask mutants`: break the kernel on purpose and check that the proofs notice.
//!
//! Each break in [`list::breaks`] is applied to a scratch copy of the repository
//! (`target/mutants/tree`, kept between runs so rebuilds are incremental), the copy is built
//! with its own `cargo xtask build`, and the proofs the break names are booted from the
//! copy's artifacts with this registry. A break is *caught* when every one of its proofs
//! fails; a proof that still passes is a hole in the evidence. The working tree is never
//! touched.

mod list;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

use crate::builder::Image;
use crate::proofs::{self, Job, Proof};
use crate::qemu::{Accel, AccelEnv, KvmBackend};
use crate::runner::{self, Env, JobResult, Outcome};
use list::{Break, Edit};

/// What happened to one break.
enum Verdict {
    /// Every named proof failed; the first failure of each, for the report.
    Caught(Vec<String>),
    /// These proofs passed with the break applied.
    Missed(Vec<&'static str>),
    /// Could not be judged here (no accelerator for the proof, build failure, ...).
    NotRun(String),
}

/// `cargo xtask mutants [--only NAME | --area AREA] [--baseline]`.
pub fn run(only: Option<String>, area: Option<String>, baseline: bool) -> Result<ExitCode> {
    let in_area: Vec<&Break> = match area.as_deref() {
        None => list::breaks().collect(),
        Some(a) => match list::area(a) {
            Some(group) => group.iter().collect(),
            None => {
                let names: Vec<_> = list::AREAS.iter().map(|(n, _)| *n).collect();
                bail!("no break area {a:?}; areas: {}", names.join(", "));
            }
        },
    };
    let selected: Vec<&Break> =
        in_area.into_iter().filter(|b| only.as_deref().is_none_or(|o| b.name == o)).collect();
    if selected.is_empty() {
        let names: Vec<_> = list::breaks().map(|b| b.name).collect();
        bail!("no break named {:?}; known: {}", only.unwrap_or_default(), names.join(", "));
    }
    let root = crate::builder::workspace_root();
    let out_dir = root.join("target/mutants");
    let tree = out_dir.join("tree");
    // Fail loudly before building anything if a snippet has moved away.
    for b in &selected {
        for e in b.edits {
            apply(
                &std::fs::read_to_string(root.join(e.file))
                    .with_context(|| format!("reading {}", e.file))?,
                e,
            )
            .map_err(|why| anyhow::anyhow!("break {} no longer applies: {why}", b.name))?;
        }
    }
    let files = sync_tree(&root, &tree)?;
    println!("xtask: mutants: scratch copy of {files} files in {}", tree.display());
    let accel_env = AccelEnv::detect()?;
    let registry = proofs::registry();
    if baseline {
        let names: Vec<&str> = selected.iter().flat_map(|b| b.proofs.iter().copied()).collect();
        println!("\nxtask: mutants: baseline (no break): {}", names.join(", "));
        build_tree(&tree, &images_of(&registry, &names))?;
        for b in &selected {
            for (name, r) in boot(&registry, b, &tree, &out_dir.join("logs/baseline"), &accel_env)?
            {
                if r.failed() {
                    bail!("baseline: {name} fails without any break; fix that first (transcript {:?})", r.log);
                }
            }
        }
    }
    let mut rows = Vec::new();
    for b in &selected {
        println!("\nxtask: mutants: {} — {}", b.name, b.what);
        let verdict = judge_break(&registry, b, &root, &tree, &out_dir, &accel_env);
        restore(&root, &tree, b)?;
        let line = match &verdict {
            Ok(Verdict::Caught(why)) => format!("caught: {}", why.join(" | ")),
            Ok(Verdict::Missed(p)) => format!("MISSED: {} still pass(es)", p.join(", ")),
            Ok(Verdict::NotRun(why)) => format!("not run: {why}"),
            Err(e) => format!("error: {e:#}"),
        };
        println!("xtask: mutants: {} {line}", b.name);
        rows.push((*b, verdict.unwrap_or_else(|e| Verdict::NotRun(format!("{e:#}")))));
    }
    let report = report(&rows);
    std::fs::write(out_dir.join("report.md"), &report)?;
    println!("\n{report}\nxtask: wrote {}", out_dir.join("report.md").display());
    let caught = rows.iter().filter(|(_, v)| matches!(v, Verdict::Caught(_))).count();
    println!("{caught} of {} breaks caught", rows.len());
    Ok(if caught == rows.len() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn judge_break(
    registry: &[Proof],
    b: &Break,
    root: &Path,
    tree: &Path,
    out_dir: &Path,
    env: &AccelEnv,
) -> Result<Verdict> {
    if b.accel == Accel::Kvm && env.kvm.is_none() {
        return Ok(Verdict::NotRun("needs KVM (/dev/kvm not available)".into()));
    }
    for e in b.edits {
        let pristine = std::fs::read_to_string(root.join(e.file))?;
        let broken = apply(&pristine, e)
            .map_err(|why| anyhow::anyhow!("break {} no longer applies: {why}", b.name))?;
        std::fs::write(tree.join(e.file), broken)?;
    }
    if let Err(e) = build_tree(tree, &images_of(registry, b.proofs)) {
        return Ok(Verdict::NotRun(format!("the broken tree does not build: {e:#}")));
    }
    let mut caught = Vec::new();
    let mut missed = Vec::new();
    for (name, r) in boot(registry, b, tree, &out_dir.join("logs").join(b.name), env)? {
        match &r.outcome {
            Outcome::Ran { failures, .. } if !failures.is_empty() => {
                caught.push(format!("{name}: {}", telling(failures)))
            }
            Outcome::Ran { .. } => missed.push(name),
            Outcome::Skipped(why) | Outcome::Error(why) => {
                return Ok(Verdict::NotRun(format!("{name}: {why}")))
            }
        }
    }
    Ok(if missed.is_empty() { Verdict::Caught(caught) } else { Verdict::Missed(missed) })
}

/// The failure that says most about what broke: a check that saw a wrong value rather than
/// the timeout or exit status it led to; else the first failure (a crash or timeout whose
/// evidence never got printed says more than the keys it left missing).
fn telling(failures: &[String]) -> &str {
    let saw_a_value = |f: &&String| {
        f.contains("check failed") && !f.contains("missing") && !f.contains(" 0 keys matched")
    };
    failures.iter().find(saw_a_value).unwrap_or(&failures[0])
}

/// Boots each proof `b` names from the scratch tree's artifacts, one at a time.
fn boot(
    registry: &[Proof],
    b: &Break,
    tree: &Path,
    log_dir: &Path,
    env: &AccelEnv,
) -> Result<Vec<(&'static str, JobResult)>> {
    let target = tree.join("target");
    let e = Env {
        qemu: crate::qemu_bin(),
        kernel: crate::builder::Image::Scenarios.path_under(&target),
        plain_kernel: crate::builder::Image::Plain.path_under(&target),
        example_kernel: crate::builder::Image::Example.path_under(&target),
        user_dir: target.join("user").join(crate::builder::KERNEL_TARGET).join("release"),
        root: tree.to_path_buf(),
        log_dir: log_dir.to_path_buf(),
    };
    let mut out = Vec::new();
    for name in b.proofs {
        let i = registry
            .iter()
            .position(|p| p.name == *name)
            .with_context(|| format!("break {} names unknown proof {name}", b.name))?;
        let p = &registry[i];
        let skip = match (b.accel, env.kvm) {
            (Accel::Kvm, Some(KvmBackend::Pvm)) if p.guest_ring3 => {
                Some(proofs::PVM_RING3.to_string())
            }
            _ => None,
        };
        let r = runner::run_job(p, &Job { proof: i, accel: b.accel, skip }, &e);
        println!("  {}", crate::report::progress_line(&r));
        out.push((p.name, r));
    }
    Ok(out)
}

/// `text` with `e.find` replaced, or why the edit cannot be made.
fn apply(text: &str, e: &Edit) -> Result<String, String> {
    match text.matches(e.find).count() {
        1 => Ok(text.replacen(e.find, e.replace, 1)),
        0 => Err(format!("snippet not found in {}: {:?}", e.file, e.find)),
        n => Err(format!("snippet occurs {n} times in {}: {:?}", e.file, e.find)),
    }
}

/// Files of the working tree worth copying: tracked plus untracked-but-not-ignored.
fn source_files(root: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    if !out.status.success() {
        bail!("git ls-files failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(out
        .stdout
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| PathBuf::from(String::from_utf8_lossy(s).into_owned()))
        .collect())
}

/// Makes `tree` a copy of the working tree's sources. Files whose content already matches
/// are left alone (their mtimes too), so cargo rebuilds only what changed; files the working
/// tree no longer has are removed (the copy's `target/` stays).
fn sync_tree(root: &Path, tree: &Path) -> Result<usize> {
    let files: std::collections::BTreeSet<PathBuf> =
        source_files(root)?.into_iter().filter(|f| root.join(f).is_file()).collect();
    for f in &files {
        copy_if_different(&root.join(f), &tree.join(f))?;
    }
    remove_stale(tree, Path::new(""), &files)?;
    Ok(files.len())
}

/// Deletes files under `tree/dir` that are not in `keep` (paths relative to `tree`).
fn remove_stale(tree: &Path, dir: &Path, keep: &std::collections::BTreeSet<PathBuf>) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(tree.join(dir)) else { return Ok(()) };
    for entry in entries {
        let rel = dir.join(entry?.file_name());
        if rel == Path::new("target") {
            continue;
        }
        let path = tree.join(&rel);
        if path.is_dir() {
            remove_stale(tree, &rel, keep)?;
        } else if !keep.contains(&rel) {
            std::fs::remove_file(&path)
                .with_context(|| format!("removing stale {}", path.display()))?;
        }
    }
    Ok(())
}

fn copy_if_different(src: &Path, dst: &Path) -> Result<()> {
    let data = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
    if std::fs::read(dst).ok().as_deref() == Some(&data[..]) {
        return Ok(());
    }
    if let Some(d) = dst.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(dst, data).with_context(|| format!("writing {}", dst.display()))
}

/// Puts the files `b` edited back as they are in the working tree.
fn restore(root: &Path, tree: &Path, b: &Break) -> Result<()> {
    for e in b.edits {
        copy_if_different(&root.join(e.file), &tree.join(e.file))?;
    }
    Ok(())
}

/// `cargo xtask build` inside the scratch tree (its own target dir, its own xtask).
/// The images the named proofs boot (the scenarios image for most breaks).
fn images_of(registry: &[Proof], names: &[&str]) -> Vec<Image> {
    let mut images = Vec::new();
    for p in registry.iter().filter(|p| names.contains(&p.name)) {
        if !images.contains(&p.image) {
            images.push(p.image);
        }
    }
    images
}

fn build_tree(tree: &Path, images: &[Image]) -> Result<()> {
    for image in images {
        let name = match image {
            Image::Plain => "plain",
            Image::Scenarios => "scenarios",
            Image::Example => "example",
        };
        let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["xtask", "build", "--image", name])
            .current_dir(tree)
            .env_remove("KEEL_KERNEL")
            .env_remove("KEEL_PLAIN_KERNEL")
            .env_remove("KEEL_EXAMPLE_KERNEL")
            .env_remove("KEEL_USER_DIR")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .context("starting cargo xtask build in the scratch tree")?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> =
                err.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("build failed:\n{}", tail.join("\n"));
        }
    }
    Ok(())
}

/// The Markdown table for docs/proofs.md.
fn report(rows: &[(&Break, Verdict)]) -> String {
    let mut s = String::from("| break | proofs | result |\n|---|---|---|\n");
    for (b, v) in rows {
        let result = match v {
            Verdict::Caught(why) => format!("caught: {}", why.join("; ").replace('|', "\\|")),
            Verdict::Missed(p) => format!("**missed**: {} passed", p.join(", ")),
            Verdict::NotRun(why) => {
                format!("not run: {}", why.lines().next().unwrap_or("").replace('|', "\\|"))
            }
        };
        s += &format!(
            "| `{}`: {} | {} ({}) | {result} |\n",
            b.name,
            b.what,
            b.proofs.join(", "),
            b.accel
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_break_applies_to_the_current_tree_exactly_once() {
        let root = crate::builder::workspace_root();
        let registry = proofs::registry();
        let mut names = std::collections::BTreeSet::new();
        for b in list::breaks() {
            assert!(names.insert(b.name), "duplicate break {}", b.name);
            assert!(!b.proofs.is_empty(), "{} names no proof", b.name);
            for p in b.proofs {
                assert!(registry.iter().any(|r| r.name == *p), "{}: unknown proof {p}", b.name);
            }
            for e in b.edits {
                let text = std::fs::read_to_string(root.join(e.file))
                    .unwrap_or_else(|err| panic!("{}: {}: {err}", b.name, e.file));
                let broken = apply(&text, e)
                    .unwrap_or_else(|why| panic!("break {} no longer applies: {why}", b.name));
                assert_ne!(broken, text, "{}: the edit changes nothing", b.name);
            }
        }
    }

    #[test]
    fn sync_copies_changes_and_drops_stale_files() {
        let base = std::env::temp_dir().join(format!("xtask-mutants-sync-{}", std::process::id()));
        let (root, tree) = (base.join("root"), base.join("tree"));
        let _ = std::fs::remove_dir_all(&base);
        for d in [root.join("src"), tree.join("src"), tree.join("target")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(root.join("src/a.rs"), "new").unwrap();
        std::fs::write(tree.join("src/a.rs"), "old").unwrap();
        std::fs::write(tree.join("src/gone.rs"), "x").unwrap();
        std::fs::write(tree.join("target/keep"), "x").unwrap();
        let keep: std::collections::BTreeSet<PathBuf> = [PathBuf::from("src/a.rs")].into();
        copy_if_different(&root.join("src/a.rs"), &tree.join("src/a.rs")).unwrap();
        remove_stale(&tree, Path::new(""), &keep).unwrap();
        assert_eq!(std::fs::read_to_string(tree.join("src/a.rs")).unwrap(), "new");
        assert!(!tree.join("src/gone.rs").exists());
        assert!(tree.join("target/keep").exists(), "the copy's build output stays");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn apply_refuses_missing_and_ambiguous_snippets() {
        let e = Edit { file: "f", find: "ab", replace: "x" };
        assert_eq!(apply("zabz", &e).unwrap(), "zxz");
        assert!(apply("zz", &e).unwrap_err().contains("not found"));
        assert!(apply("abab", &e).unwrap_err().contains("occurs 2 times"));
    }
}
