use super::*;
use alloc::string::ToString;

const EXAMPLE: &str = r#"# Keel boot manifest: comments start with '#'
program "edu-msi" {
    binary = "edu-driver"          # a module whose file name matches
    args = "mode=msi count=100"    # passed to the program in its start info
    cpu = 1                        # optional
    expect_exit = 0
    grant Console
    grant Timer
    grant Interrupt { source = msi(edu) }
    grant Interrupt { source = intx(edu) }
    grant Interrupt { source = isa(8) }
    grant DeviceMemory { pci = edu, bar = 0 }
    grant IoPorts { 0x70..0x71 }
}
device edu { pci = 1234:11e8 }
program "rtc" { binary = "rtc-driver" grant Console grant IoPorts { 0x70..0x71 } grant Interrupt { source = isa(8) } }
program "edu-takeover" { binary = "edu-driver", after = "edu-msi", expect_exit = 0x2a, grant Interrupt { source = msi(edu) } }
"#;

/// Parses and expects an error at `line:column` of the given kind.
fn err(text: &str) -> ManifestError {
    match parse(text) {
        Ok(m) => panic!("expected an error, got {m:?}"),
        Err(e) => e,
    }
}

fn at(text: &str, line: u32, column: u32, kind: ErrorKind) {
    let e = err(text);
    assert_eq!((e.line, e.column, &e.kind), (line, column, &kind), "{e}");
}

#[test]
fn example_parses() {
    let m = parse(EXAMPLE).unwrap();
    assert_eq!(
        m.devices,
        vec![Device {
            name: "edu".into(),
            vendor: 0x1234,
            device: 0x11e8,
            index: 0
        }]
    );
    assert_eq!(m.programs.len(), 3);
    let p = &m.programs[0];
    assert_eq!(p.name, "edu-msi");
    assert_eq!(p.binary, "edu-driver");
    assert_eq!(p.args, "mode=msi count=100");
    assert_eq!(p.cpu, Some(1));
    assert_eq!(p.after, None);
    assert_eq!(p.expect_exit, Some(0));
    assert_eq!(
        p.grants,
        vec![
            Grant::Console,
            Grant::Timer,
            Grant::Interrupt(InterruptSource::Msi("edu".into())),
            Grant::Interrupt(InterruptSource::Intx("edu".into())),
            Grant::Interrupt(InterruptSource::Isa(8)),
            Grant::DeviceMemory {
                device: "edu".into(),
                bar: 0
            },
            Grant::IoPorts {
                first: 0x70,
                last: 0x71
            },
        ]
    );
    let rtc = m.program("rtc").unwrap();
    assert_eq!(rtc.cpu, None);
    assert_eq!(rtc.cpu_or_default(), 0);
    assert_eq!(rtc.args, "");
    assert_eq!(rtc.grants.len(), 3);
    let t = &m.programs[2];
    assert_eq!(t.after.as_deref(), Some("edu-msi"));
    assert_eq!(t.expect_exit, Some(42));
    assert!(m.device("edu").is_some());
    assert!(m.device("nope").is_none());
}

#[test]
fn empty_and_comment_only() {
    assert_eq!(parse("").unwrap(), Manifest::default());
    assert_eq!(
        parse("# nothing\n   \n# at all").unwrap(),
        Manifest::default()
    );
}

#[test]
fn device_fields() {
    let m = parse("device nic { index = 2, pci = 0x8086:ABCD }").unwrap();
    assert_eq!(
        m.devices[0],
        Device {
            name: "nic".into(),
            vendor: 0x8086,
            device: 0xabcd,
            index: 2
        }
    );
    let m = parse("device a-b_c { pci = abcd:1 }").unwrap();
    assert_eq!((m.devices[0].vendor, m.devices[0].device), (0xabcd, 1));
}

#[test]
fn single_port_and_escapes() {
    let m =
        parse(r#"program "a" { binary = "b" args = "x=\"1\" \\ \n\t" grant IoPorts { 0x80 } }"#)
            .unwrap();
    assert_eq!(
        m.programs[0].grants,
        vec![Grant::IoPorts {
            first: 0x80,
            last: 0x80
        }]
    );
    assert_eq!(m.programs[0].args, "x=\"1\" \\ \n\t");
}

#[test]
fn full_port_range_and_max_numbers() {
    let m = parse(
        r#"program "a" { binary = "b" cpu = 4294967295 expect_exit = 0xffffffffffffffff grant IoPorts { 0..0xffff } }"#,
    )
    .unwrap();
    let p = &m.programs[0];
    assert_eq!(p.cpu, Some(u32::MAX));
    assert_eq!(p.expect_exit, Some(u64::MAX));
    assert_eq!(
        p.grants,
        vec![Grant::IoPorts {
            first: 0,
            last: 0xffff
        }]
    );
}

#[test]
fn after_forward_reference_and_chain() {
    let m = parse(
        r#"program "a" { binary = "x" after = "b" }
program "b" { binary = "x" after = "c" }
program "c" { binary = "x" }"#,
    )
    .unwrap();
    assert_eq!(m.programs[0].after.as_deref(), Some("b"));
}

#[test]
fn display_roundtrips_grants() {
    let m = parse(EXAMPLE).unwrap();
    let mut text = alloc::string::String::from(
        "device edu { pci = 1234:11e8 }\nprogram \"p\" { binary = \"b\"\n",
    );
    for g in &m.programs[0].grants {
        text.push_str(&alloc::format!("grant {g}\n"));
    }
    text.push('}');
    assert_eq!(
        parse(&text).unwrap().programs[0].grants,
        m.programs[0].grants
    );
}

#[test]
fn module_matching() {
    let m = parse(EXAMPLE).unwrap();
    let p = &m.programs[0];
    assert!(p.matches_module("edu-driver"));
    assert!(p.matches_module("/boot/bin/edu-driver"));
    assert!(p.matches_module("/boot/edu-driver some args"));
    assert!(!p.matches_module("/boot/edu-driver2"));
    assert!(!p.matches_module("edu-driver/x"));
    assert!(!p.matches_module(""));
    assert_eq!(module_basename("  a/b/c  d"), "c");
}

#[test]
fn error_display_format() {
    let e = err("program \"a\" {\n  binary = \"b\"\n  grant Console foo\n");
    assert_eq!(e.to_string(), "manifest:3:17: unknown key `foo` in program");
    let e = err("program \"a\" { binary = \"b\"");
    assert_eq!(
        e.to_string(),
        "manifest:1:27: expected a program entry (key = value or grant) or '}' but found end of file"
    );
    let e = err("device d { pci = 1:2 )");
    assert_eq!(
        e.to_string(),
        "manifest:1:22: expected a device key (pci, index) or '}' but found ')'"
    );
}

#[test]
fn lexical_errors() {
    at(
        "program \"a\" { binary = \"b\" } @",
        1,
        30,
        ErrorKind::UnexpectedChar('@'),
    );
    at("\n  program \"a", 2, 11, ErrorKind::UnterminatedString);
    at("program \"a\nb\" {}", 1, 9, ErrorKind::UnterminatedString);
    at("program \"a\\", 1, 9, ErrorKind::UnterminatedString);
    at("program \"a\\q\" {}", 1, 11, ErrorKind::InvalidEscape('q'));
    at(
        "program \"a\" { binary = \"b\" grant IoPorts { 1.2 } }",
        1,
        45,
        ErrorKind::UnexpectedChar('.'),
    );
    at(
        "program \"é\" { binary = \"b\" } ü",
        1,
        30,
        ErrorKind::UnexpectedChar('ü'),
    );
}

#[test]
fn syntax_errors() {
    at(
        "programs",
        1,
        1,
        ErrorKind::Expected {
            expected: "'program' or 'device'",
            found: "identifier `programs`".into(),
        },
    );
    at(
        "{",
        1,
        1,
        ErrorKind::Expected {
            expected: "'program' or 'device'",
            found: "'{'".into(),
        },
    );
    at(
        "program edu {}",
        1,
        9,
        ErrorKind::Expected {
            expected: "a program name string",
            found: "identifier `edu`".into(),
        },
    );
    at(
        "program \"a\" binary",
        1,
        13,
        ErrorKind::Expected {
            expected: "'{'",
            found: "identifier `binary`".into(),
        },
    );
    at(
        "program \"a\" { binary \"b\" }",
        1,
        22,
        ErrorKind::Expected {
            expected: "'='",
            found: "string \"b\"".into(),
        },
    );
    at(
        "program \"a\" { binary = b }",
        1,
        24,
        ErrorKind::Expected {
            expected: "a binary name string",
            found: "identifier `b`".into(),
        },
    );
    at(
        "program \"a\" { binary = \"b\" cpu = \"1\" }",
        1,
        34,
        ErrorKind::Expected {
            expected: "a number",
            found: "string \"1\"".into(),
        },
    );
    at(
        "device 3 { }",
        1,
        8,
        ErrorKind::Expected {
            expected: "a device name",
            found: "number `3`".into(),
        },
    );
    at(
        "device d { pci = 1234 11e8 }",
        1,
        23,
        ErrorKind::Expected {
            expected: "':' between vendor and device id",
            found: "number `11e8`".into(),
        },
    );
    at(
        "device d { pci = : }",
        1,
        18,
        ErrorKind::Expected {
            expected: "a hex PCI id",
            found: "':'".into(),
        },
    );
    at(
        "program \"a\" { binary = \"b\" grant IoPorts { 1..2 3 } }",
        1,
        49,
        ErrorKind::Expected {
            expected: "'..' or '}'",
            found: "number `3`".into(),
        },
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { source = msi edu } }",
        1,
        59,
        ErrorKind::Expected {
            expected: "'('",
            found: "identifier `edu`".into(),
        },
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { source = isa(3 } }",
        1,
        61,
        ErrorKind::Expected {
            expected: "')'",
            found: "'}'".into(),
        },
    );
    at(
        "program \"a\" { binary = \"b\" grant }",
        1,
        34,
        ErrorKind::Expected {
            expected: "a grant kind",
            found: "'}'".into(),
        },
    );
}

#[test]
fn number_errors() {
    at(
        "program \"a\" { binary = \"b\" cpu = 12ab }",
        1,
        34,
        ErrorKind::InvalidNumber("12ab".into()),
    );
    at(
        "program \"a\" { binary = \"b\" cpu = 0x }",
        1,
        34,
        ErrorKind::InvalidNumber("0x".into()),
    );
    at(
        "program \"a\" { binary = \"b\" cpu = 1_000 }",
        1,
        34,
        ErrorKind::InvalidNumber("1_000".into()),
    );
    at(
        "program \"a\" { binary = \"b\" cpu = 4294967296 }",
        1,
        34,
        ErrorKind::NumberOutOfRange {
            value: "4294967296".into(),
            max: u32::MAX as u64,
        },
    );
    at(
        "program \"a\" { binary = \"b\" expect_exit = 18446744073709551616 }",
        1,
        42,
        ErrorKind::NumberOutOfRange {
            value: "18446744073709551616".into(),
            max: u64::MAX,
        },
    );
    at(
        "program \"a\" { binary = \"b\" grant IoPorts { 0x70..0x10000 } }",
        1,
        50,
        ErrorKind::NumberOutOfRange {
            value: "0x10000".into(),
            max: 0xffff,
        },
    );
    at(
        "device d { pci = 1:2, index = 0x100000000 }",
        1,
        31,
        ErrorKind::NumberOutOfRange {
            value: "0x100000000".into(),
            max: u32::MAX as u64,
        },
    );
    at(
        "device d { pci = 12345:1 }",
        1,
        18,
        ErrorKind::InvalidPciId("12345".into()),
    );
    at(
        "device d { pci = 1:xyz }",
        1,
        20,
        ErrorKind::InvalidPciId("xyz".into()),
    );
    at(
        "device d { pci = 0x:1 }",
        1,
        18,
        ErrorKind::InvalidPciId("0x".into()),
    );
}

#[test]
fn key_errors() {
    at(
        "program \"a\" {\n  binary = \"b\"\n  priority = 3\n}",
        3,
        3,
        ErrorKind::UnknownKey {
            key: "priority".into(),
            context: "program",
        },
    );
    at(
        "device d { pci = 1:2 bus = 0 }",
        1,
        22,
        ErrorKind::UnknownKey {
            key: "bus".into(),
            context: "device",
        },
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { src = isa(1) } }",
        1,
        46,
        ErrorKind::UnknownKey {
            key: "src".into(),
            context: "Interrupt grant",
        },
    );
    at(
        "program \"a\" { binary = \"b\" grant DeviceMemory { pci = d, bar = 0, size = 4 } }",
        1,
        67,
        ErrorKind::UnknownKey {
            key: "size".into(),
            context: "DeviceMemory grant",
        },
    );
    at(
        "program \"a\" { binary = \"b\" binary = \"c\" }",
        1,
        28,
        ErrorKind::DuplicateKey("binary".into()),
    );
    at(
        "program \"a\" { binary = \"b\" cpu = 1 cpu = 2 }",
        1,
        36,
        ErrorKind::DuplicateKey("cpu".into()),
    );
    at(
        "device d { pci = 1:2 pci = 1:2 }",
        1,
        22,
        ErrorKind::DuplicateKey("pci".into()),
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { source = isa(1) source = isa(2) } }",
        1,
        62,
        ErrorKind::DuplicateKey("source".into()),
    );
    at(
        "program \"a\" { binary = \"b\" grant DeviceMemory { bar = 0 bar = 1 pci = d } }",
        1,
        57,
        ErrorKind::DuplicateKey("bar".into()),
    );
    at(
        "program \"a\" {\n args = \"x\" }",
        1,
        13,
        ErrorKind::MissingKey {
            key: "binary",
            context: "program",
        },
    );
    at(
        "device d { index = 1 }",
        1,
        10,
        ErrorKind::MissingKey {
            key: "pci",
            context: "device",
        },
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { } }",
        1,
        34,
        ErrorKind::MissingKey {
            key: "source",
            context: "Interrupt grant",
        },
    );
    at(
        "program \"a\" { binary = \"b\" grant DeviceMemory { bar = 1 } }",
        1,
        34,
        ErrorKind::MissingKey {
            key: "pci",
            context: "DeviceMemory grant",
        },
    );
    at(
        "program \"a\" { binary = \"b\" grant DeviceMemory { pci = d } }",
        1,
        34,
        ErrorKind::MissingKey {
            key: "bar",
            context: "DeviceMemory grant",
        },
    );
}

#[test]
fn grant_errors() {
    at(
        "program \"a\" { binary = \"b\" grant Serial }",
        1,
        34,
        ErrorKind::UnknownGrant("Serial".into()),
    );
    at(
        "program \"a\" { binary = \"b\" grant console }",
        1,
        34,
        ErrorKind::UnknownGrant("console".into()),
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { source = gsi(3) } }",
        1,
        55,
        ErrorKind::UnknownInterruptSource("gsi".into()),
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { source = isa(16) } }",
        1,
        59,
        ErrorKind::IsaIrqOutOfRange(16),
    );
    at(
        "program \"a\" { binary = \"b\" grant DeviceMemory { pci = d, bar = 6 } }",
        1,
        64,
        ErrorKind::BarOutOfRange(6),
    );
    at(
        "program \"a\" { binary = \"b\" grant IoPorts { 0x71..0x70 } }",
        1,
        44,
        ErrorKind::ReversedPortRange {
            first: 0x71,
            last: 0x70,
        },
    );
    at(
        "device edu { pci = 1:2 }\nprogram \"a\" {\n binary = \"b\"\n grant Interrupt { source = msi(edu) }\n grant Interrupt { source = intx(edu) }\n grant Interrupt { source = msi(edu) }\n}",
        6,
        2,
        ErrorKind::DuplicateGrant(Grant::Interrupt(InterruptSource::Msi("edu".into()))),
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { source = isa(4) } grant Interrupt { source = isa(0x4) } }",
        1,
        64,
        ErrorKind::DuplicateGrant(Grant::Interrupt(InterruptSource::Isa(4))),
    );
    at(
        "program \"a\" { binary = \"b\" grant Console grant Console }",
        1,
        42,
        ErrorKind::DuplicateGrant(Grant::Console),
    );
}

#[test]
fn name_errors() {
    at(
        "program \"\" { binary = \"b\" }",
        1,
        9,
        ErrorKind::EmptyProgramName,
    );
    at(
        "program \"a\" { binary = \"\" }",
        1,
        24,
        ErrorKind::InvalidBinary("".into()),
    );
    at(
        "program \"a\" { binary = \"bin/x\" }",
        1,
        24,
        ErrorKind::InvalidBinary("bin/x".into()),
    );
}

#[test]
fn semantic_errors() {
    at(
        "program \"a\" { binary = \"b\" }\n\nprogram \"a\" { binary = \"c\" }",
        3,
        9,
        ErrorKind::DuplicateProgram("a".into()),
    );
    at(
        "device d { pci = 1:2 }\ndevice d { pci = 3:4 }",
        2,
        8,
        ErrorKind::DuplicateDevice("d".into()),
    );
    at(
        "program \"a\" {\n binary = \"b\"\n grant Interrupt { source = msi(nic) }\n}",
        3,
        33,
        ErrorKind::UnknownDevice("nic".into()),
    );
    at(
        "program \"a\" {\n binary = \"b\"\n grant Interrupt { source = intx(nic) }\n}",
        3,
        34,
        ErrorKind::UnknownDevice("nic".into()),
    );
    at(
        "program \"a\" {\n binary = \"b\"\n grant DeviceMemory { bar = 2, pci = nic }\n}",
        3,
        38,
        ErrorKind::UnknownDevice("nic".into()),
    );
    at(
        "program \"a\" {\n binary = \"b\"\n after = \"z\"\n}",
        3,
        10,
        ErrorKind::UnknownProgram("z".into()),
    );
    at(
        "program \"a\" { binary = \"b\" after = \"a\" }",
        1,
        36,
        ErrorKind::AfterSelf("a".into()),
    );
    at(
        "program \"x\" { binary = \"b\" }\nprogram \"a\" { binary = \"b\" after = \"c\" }\nprogram \"c\" { binary = \"b\" after = \"a\" }",
        2,
        36,
        ErrorKind::AfterCycle("a".into()),
    );
}

#[test]
fn earliest_semantic_error_wins() {
    // The unknown device on line 2 comes before the duplicate on line 3.
    let text = "program \"a\" { binary = \"b\" }\nprogram \"b\" { binary = \"b\" grant Interrupt { source = msi(q) } }\nprogram \"a\" { binary = \"b\" }";
    at(text, 2, 59, ErrorKind::UnknownDevice("q".into()));
}

/// A tiny xorshift PRNG: deterministic, dependency-free fuzz input.
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
    assert!(
        ok > 0,
        "the soup should sometimes be valid (the empty input is)"
    );
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
