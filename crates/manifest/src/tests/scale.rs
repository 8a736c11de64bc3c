//! Manifests with thousands of programs: the semantic checks (duplicates, `after` targets and
//! cycles) must stay near-linear. The old cycle check walked every chain from every program
//! with a linear name lookup per step, O(n³): 0.5 s at 1,000 programs and about a minute at
//! 5,000, so the bound below fails it by far while leaving a slow debug build room.

use super::*;
use alloc::format;
use alloc::string::String;

/// `n` programs, each (but the first) starting after the previous one; `cycle_at` closes a
/// loop from the last program back to that one.
fn chain(n: usize, cycle_at: Option<usize>) -> String {
    let mut text = String::new();
    for i in 0..n {
        let after = match (i, cycle_at) {
            (0, Some(0)) => format!(" after = \"p{}\"", n - 1),
            (0, _) => String::new(),
            (i, Some(c)) if i == c => format!(" after = \"p{}\"", n - 1),
            (i, _) => format!(" after = \"p{}\"", i - 1),
        };
        text.push_str(&format!("program \"p{i}\" {{ binary = \"b\"{after} }}\n"));
    }
    text
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, std::time::Duration) {
    let t0 = std::time::Instant::now();
    let r = f();
    (r, t0.elapsed())
}

const PROGRAMS: usize = 5_000;
const BOUND: std::time::Duration = std::time::Duration::from_secs(3);

#[test]
fn long_after_chain_is_checked_quickly() {
    let text = chain(PROGRAMS, None);
    let (m, took) = timed(|| parse(&text));
    let m = m.expect("a chain without a loop is valid");
    assert_eq!(m.programs.len(), PROGRAMS);
    assert_eq!(
        m.programs[PROGRAMS - 1].after.as_deref(),
        Some(format!("p{}", PROGRAMS - 2).as_str())
    );
    assert!(took < BOUND, "{PROGRAMS} programs took {took:?}");
}

#[test]
fn long_after_cycle_is_found_quickly() {
    // p1000 -> p4999 -> p4998 -> ... -> p1000: a loop of 4,000 programs.
    let text = chain(PROGRAMS, Some(1_000));
    let (r, took) = timed(|| parse(&text));
    let e = r.expect_err("the loop must be reported");
    // The earliest program on the loop is reported.
    assert_eq!(e.kind, ErrorKind::AfterCycle("p1000".into()));
    assert_eq!(e.line, 1_001);
    assert!(took < BOUND, "{PROGRAMS} programs took {took:?}");
}

#[test]
fn programs_leading_into_a_loop_are_not_on_it() {
    // c -> a -> b -> a: `c` waits on the loop but is not part of it (reported: a, the first
    // program on the loop).
    let text = "program \"c\" { binary = \"x\" after = \"a\" }\nprogram \"a\" { binary = \"x\" after = \"b\" }\nprogram \"b\" { binary = \"x\" after = \"a\" }";
    let e = parse(text).expect_err("loop");
    assert_eq!(e.kind, ErrorKind::AfterCycle("a".into()));
    assert_eq!(e.line, 2);
}
