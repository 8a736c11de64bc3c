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
            index: 0,
            dma_unprotected: false
        }]
    );
    assert_eq!(m.programs.len(), 3);
    let p = &m.programs[0];
    assert_eq!(p.name, "edu-msi");
    assert_eq!(p.binary, "edu-driver");
    assert_eq!(p.args, "mode=msi count=100");
    assert_eq!(p.cpu, Some(1));
    assert_eq!(p.cpu_or_default(), 1);
    assert_eq!(
        m.programs.iter().find(|q| q.cpu.is_none()).map(|q| q.cpu_or_default()),
        Some(0),
        "no cpu: CPU 0"
    );
    assert_eq!(p.after, None);
    assert_eq!(p.expect_exit, Some(0));
    assert_eq!(
        p.grants,
        vec![
            Grant::Console,
            Grant::Timer,
            Grant::Interrupt(InterruptSource::Msi("edu".into()), None),
            Grant::Interrupt(InterruptSource::Intx("edu".into()), None),
            Grant::Interrupt(InterruptSource::Isa(8), None),
            Grant::DeviceMemory { device: "edu".into(), bar: 0 },
            Grant::IoPorts { first: 0x70, last: 0x71 },
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
    assert_eq!(parse("# nothing\n   \n# at all").unwrap(), Manifest::default());
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
            index: 2,
            dma_unprotected: false
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
    assert_eq!(m.programs[0].grants, vec![Grant::IoPorts { first: 0x80, last: 0x80 }]);
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
    assert_eq!(p.grants, vec![Grant::IoPorts { first: 0, last: 0xffff }]);
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
    assert_eq!(parse(&text).unwrap().programs[0].grants, m.programs[0].grants);
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
        "manifest:1:22: expected a device key (pci, index, dma) or '}' but found ')'"
    );
}

mod errors;
mod fuzz;
mod policy;
mod scale;

#[test]
fn process_and_virtual_memory_grants() {
    let m = parse("program \"a\" { binary = \"b\" grant Process grant VirtualMemory }").unwrap();
    assert_eq!(m.programs[0].grants, [Grant::Process, Grant::VirtualMemory]);
}

#[test]
fn pci_id_halves_have_one_to_four_hex_digits() {
    use crate::lexer::parse_pci_half;
    assert_eq!(parse_pci_half("11e8"), Ok(0x11e8));
    assert_eq!(parse_pci_half("0x1234"), Ok(0x1234));
    assert_eq!(parse_pci_half("f"), Ok(0xf));
    for bad in ["", "0x", "0001f", "12g4", "0x12345"] {
        assert!(parse_pci_half(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn largest_bar_and_isa_irq_are_accepted() {
    let m = parse("device d { pci = 1234:11e8 }\nprogram \"a\" { binary = \"b\" grant DeviceMemory { pci = d, bar = 5 } grant Interrupt { source = isa(15) } }")
        .unwrap();
    assert_eq!(m.programs[0].grants.len(), 2);
}

#[test]
fn restarts_default_to_none_and_count_runs() {
    let m = parse(r#"program "a" { binary = "a" } program "b" { binary = "b" restarts = 999 }"#)
        .unwrap();
    assert_eq!((m.programs[0].restarts, m.programs[0].runs()), (0, 1));
    assert_eq!((m.programs[1].restarts, m.programs[1].runs()), (999, 1000));
    let max = alloc::format!(r#"program "a" {{ binary = "a" restarts = {MAX_RESTARTS} }}"#);
    assert_eq!(parse(&max).unwrap().programs[0].runs(), u64::from(MAX_RESTARTS) + 1);
}

#[test]
fn restarts_are_bounded_and_given_once() {
    let over = alloc::format!(r#"program "a" {{ binary = "a" restarts = {} }}"#, MAX_RESTARTS + 1);
    at(
        &over,
        1,
        39,
        ErrorKind::NumberOutOfRange {
            value: (MAX_RESTARTS + 1).to_string(),
            max: u64::from(MAX_RESTARTS),
        },
    );
    at(
        r#"program "a" { binary = "a" restarts = 1 restarts = 2 }"#,
        1,
        41,
        ErrorKind::DuplicateKey("restarts".into()),
    );
    at(r#"program "a" { binary = "a" restarts = -1 }"#, 1, 39, ErrorKind::UnexpectedChar('-'));
}

#[test]
fn msix_sources_parse_and_print_back() {
    let text = "device nvme { pci = 1b36:0010 }\nprogram \"q\" {\n binary = \"nvme-driver\"\n grant Interrupt { source = msix(nvme, 1) }\n grant Interrupt { source = msix(nvme, 2047) }\n grant Interrupt { source = msix(nvme, 0) }\n}";
    let m = parse(text).expect("valid");
    let grants = &m.programs[0].grants;
    let sources: Vec<_> = grants
        .iter()
        .map(|g| match g {
            Grant::Interrupt(s, _) => s.clone(),
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(
        sources,
        [
            InterruptSource::Msix("nvme".into(), 1),
            InterruptSource::Msix("nvme".into(), 2047),
            InterruptSource::Msix("nvme".into(), 0)
        ]
    );
    assert_eq!(grants[0].to_string(), "Interrupt { source = msix(nvme, 1) }");
    assert_eq!(grants[0].device(), Some("nvme"));
    // Two entries of one function are two sources; the same entry twice is a duplicate.
    let twice = text.replace("msix(nvme, 2047)", "msix(nvme, 1)");
    assert!(parse(&twice).is_err());
}

#[test]
fn interrupt_grants_may_name_their_cpu() {
    let text = "device nvme { pci = 1b36:0010 }\nprogram \"q\" {\n binary = \"nvme-driver\"\n grant Interrupt { source = msix(nvme, 1), cpu = 0 }\n grant Interrupt { cpu = 1, source = msix(nvme, 2) }\n grant Interrupt { source = msix(nvme, 3) }\n}";
    let m = parse(text).expect("valid");
    let g = &m.programs[0].grants;
    assert_eq!(g[0], Grant::Interrupt(InterruptSource::Msix("nvme".into(), 1), Some(0)));
    assert_eq!(g[1], Grant::Interrupt(InterruptSource::Msix("nvme".into(), 2), Some(1)));
    assert_eq!(g[2], Grant::Interrupt(InterruptSource::Msix("nvme".into(), 3), None));
    assert_eq!(g[1].to_string(), "Interrupt { source = msix(nvme, 2), cpu = 1 }");
    // One source is one right, whichever CPU each grant asks for.
    let twice = text.replace("msix(nvme, 2)", "msix(nvme, 1)");
    assert!(matches!(parse(&twice), Err(e) if matches!(e.kind, ErrorKind::DuplicateGrant(_))));
    // `cpu` twice, or without a source.
    assert!(parse(&text.replace("msix(nvme, 3)", "msix(nvme, 3), cpu = 1, cpu = 0")).is_err());
    assert!(parse(&text.replace("source = msix(nvme, 3)", "cpu = 1")).is_err());
}
