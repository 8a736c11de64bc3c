//! Every error kind, at its line and column.

use super::*;

#[test]
fn lexical_errors() {
    at("program \"a\" { binary = \"b\" } @", 1, 30, ErrorKind::UnexpectedChar('@'));
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
    at("program \"é\" { binary = \"b\" } ü", 1, 30, ErrorKind::UnexpectedChar('ü'));
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
    at("{", 1, 1, ErrorKind::Expected { expected: "'program' or 'device'", found: "'{'".into() });
    at(
        "program edu {}",
        1,
        9,
        ErrorKind::Expected { expected: "a program name string", found: "identifier `edu`".into() },
    );
    at(
        "program \"a\" binary",
        1,
        13,
        ErrorKind::Expected { expected: "'{'", found: "identifier `binary`".into() },
    );
    at(
        "program \"a\" { binary \"b\" }",
        1,
        22,
        ErrorKind::Expected { expected: "'='", found: "string \"b\"".into() },
    );
    at(
        "program \"a\" { binary = b }",
        1,
        24,
        ErrorKind::Expected { expected: "a binary name string", found: "identifier `b`".into() },
    );
    at(
        "program \"a\" { binary = \"b\" cpu = \"1\" }",
        1,
        34,
        ErrorKind::Expected { expected: "a number", found: "string \"1\"".into() },
    );
    at(
        "device 3 { }",
        1,
        8,
        ErrorKind::Expected { expected: "a device name", found: "number `3`".into() },
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
        ErrorKind::Expected { expected: "a hex PCI id", found: "':'".into() },
    );
    at(
        "program \"a\" { binary = \"b\" grant IoPorts { 1..2 3 } }",
        1,
        49,
        ErrorKind::Expected { expected: "'..' or '}'", found: "number `3`".into() },
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { source = msi edu } }",
        1,
        59,
        ErrorKind::Expected { expected: "'('", found: "identifier `edu`".into() },
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { source = isa(3 } }",
        1,
        61,
        ErrorKind::Expected { expected: "')'", found: "'}'".into() },
    );
    at(
        "program \"a\" { binary = \"b\" grant }",
        1,
        34,
        ErrorKind::Expected { expected: "a grant kind", found: "'}'".into() },
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
    at("program \"a\" { binary = \"b\" cpu = 0x }", 1, 34, ErrorKind::InvalidNumber("0x".into()));
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
        ErrorKind::NumberOutOfRange { value: "4294967296".into(), max: u32::MAX as u64 },
    );
    at(
        "program \"a\" { binary = \"b\" expect_exit = 18446744073709551616 }",
        1,
        42,
        ErrorKind::NumberOutOfRange { value: "18446744073709551616".into(), max: u64::MAX },
    );
    at(
        "program \"a\" { binary = \"b\" grant IoPorts { 0x70..0x10000 } }",
        1,
        50,
        ErrorKind::NumberOutOfRange { value: "0x10000".into(), max: 0xffff },
    );
    at(
        "device d { pci = 1:2, index = 0x100000000 }",
        1,
        31,
        ErrorKind::NumberOutOfRange { value: "0x100000000".into(), max: u32::MAX as u64 },
    );
    at("device d { pci = 12345:1 }", 1, 18, ErrorKind::InvalidPciId("12345".into()));
    at("device d { pci = 1:xyz }", 1, 20, ErrorKind::InvalidPciId("xyz".into()));
    at("device d { pci = 0x:1 }", 1, 18, ErrorKind::InvalidPciId("0x".into()));
}

#[test]
fn key_errors() {
    at(
        "program \"a\" {\n  binary = \"b\"\n  priority = 3\n}",
        3,
        3,
        ErrorKind::UnknownKey { key: "priority".into(), context: "program" },
    );
    at(
        "device d { pci = 1:2 bus = 0 }",
        1,
        22,
        ErrorKind::UnknownKey { key: "bus".into(), context: "device" },
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { src = isa(1) } }",
        1,
        46,
        ErrorKind::UnknownKey { key: "src".into(), context: "Interrupt grant" },
    );
    at(
        "program \"a\" { binary = \"b\" grant DeviceMemory { pci = d, bar = 0, size = 4 } }",
        1,
        67,
        ErrorKind::UnknownKey { key: "size".into(), context: "DeviceMemory grant" },
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
    at("device d { pci = 1:2 pci = 1:2 }", 1, 22, ErrorKind::DuplicateKey("pci".into()));
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
        ErrorKind::MissingKey { key: "binary", context: "program" },
    );
    at("device d { index = 1 }", 1, 10, ErrorKind::MissingKey { key: "pci", context: "device" });
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { } }",
        1,
        34,
        ErrorKind::MissingKey { key: "source", context: "Interrupt grant" },
    );
    at(
        "program \"a\" { binary = \"b\" grant DeviceMemory { bar = 1 } }",
        1,
        34,
        ErrorKind::MissingKey { key: "pci", context: "DeviceMemory grant" },
    );
    at(
        "program \"a\" { binary = \"b\" grant DeviceMemory { pci = d } }",
        1,
        34,
        ErrorKind::MissingKey { key: "bar", context: "DeviceMemory grant" },
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
        "program \"a\" { binary = \"b\" grant Interrupt { source = msix(d, 2048) } }",
        1,
        63,
        ErrorKind::MsixEntryOutOfRange(2048),
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { source = msix(d 1) } }",
        1,
        62,
        ErrorKind::Expected { expected: "','", found: "number `1`".into() },
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
        ErrorKind::ReversedPortRange { first: 0x71, last: 0x70 },
    );
    at(
        "device edu { pci = 1:2 }\nprogram \"a\" {\n binary = \"b\"\n grant Interrupt { source = msi(edu) }\n grant Interrupt { source = intx(edu) }\n grant Interrupt { source = msi(edu) }\n}",
        6,
        2,
        ErrorKind::DuplicateGrant(Grant::Interrupt(InterruptSource::Msi("edu".into()), None)),
    );
    at(
        "program \"a\" { binary = \"b\" grant Interrupt { source = isa(4) } grant Interrupt { source = isa(0x4) } }",
        1,
        64,
        ErrorKind::DuplicateGrant(Grant::Interrupt(InterruptSource::Isa(4), None)),
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
    at("program \"\" { binary = \"b\" }", 1, 9, ErrorKind::EmptyProgramName);
    at("program \"a\" { binary = \"\" }", 1, 24, ErrorKind::InvalidBinary("".into()));
    at("program \"a\" { binary = \"bin/x\" }", 1, 24, ErrorKind::InvalidBinary("bin/x".into()));
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
        "program \"a\" {\n binary = \"b\"\n grant Interrupt { source = msix(nic, 3) }\n}",
        3,
        34,
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
    at("program \"a\" { binary = \"b\" after = \"a\" }", 1, 36, ErrorKind::AfterSelf("a".into()));
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
