//! No input makes the parser panic.

use super::*;

use keel_testkit::XorShift;

#[test]
fn fuzz_random_token_soup_never_panics() {
    const PIECES: &[&str] = &[
        "program",
        "device",
        "grant",
        "binary",
        "args",
        "cpu",
        "after",
        "expect_exit",
        "Console",
        "Timer",
        "Interrupt",
        "DeviceMemory",
        "IoPorts",
        "source",
        "msi",
        "intx",
        "msix",
        "isa",
        "pci",
        "bar",
        "index",
        "edu",
        "\"edu-msi\"",
        "\"a\"",
        "\"",
        "\\",
        "{",
        "}",
        "(",
        ")",
        "=",
        ",",
        ":",
        "..",
        ".",
        "0x70",
        "8",
        "99999999999999999999999",
        "1234:11e8",
        "#",
        "\n",
        " ",
        "é",
        "\u{0}",
        "0x",
        "16",
        "5",
        "6",
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for _ in 0..20_000 {
        let mut s = alloc::string::String::new();
        for _ in 0..rng.below(40) {
            s.push_str(PIECES[rng.below(PIECES.len())]);
            if rng.below(2) == 0 {
                s.push(' ');
            }
        }
        match parse(&s) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(e.line >= 1 && e.column >= 1);
                let _ = e.to_string();
            }
        }
    }
    assert!(ok > 0, "the soup should sometimes be valid (the empty input is)");
}

#[test]
fn fuzz_mutated_example_never_panics() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let base = EXAMPLE.as_bytes();
    for _ in 0..20_000 {
        let mut bytes = base.to_vec();
        for _ in 0..1 + rng.below(6) {
            let i = rng.below(bytes.len());
            match rng.below(4) {
                0 => bytes[i] = rng.next() as u8,
                1 => {
                    bytes.remove(i);
                }
                2 => bytes.insert(i, b"{}()=,:.\"#\n0x"[rng.below(13)]),
                _ => bytes.truncate(i),
            }
            if bytes.is_empty() {
                break;
            }
        }
        let text = alloc::string::String::from_utf8_lossy(&bytes);
        if let Err(e) = parse(&text) {
            let _ = e.to_string();
        }
    }
}

#[test]
fn fuzz_random_bytes_never_panic() {
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    for _ in 0..20_000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let text = alloc::string::String::from_utf8_lossy(&bytes);
        let _ = parse(&text);
    }
}
