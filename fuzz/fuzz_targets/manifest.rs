//! The boot manifest (`keel-manifest`): text in, and for every accepted manifest the
//! semantic rules the crate documents hold, and printing it back in the manifest grammar
//! and parsing again gives the same manifest.
#![no_main]

use keel_fuzz::print_manifest;
use keel_manifest::{parse, Grant, InterruptSource, MAX_BAR, MAX_ISA_IRQ};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let manifest = match parse(text) {
        Ok(m) => m,
        Err(e) => {
            assert!(e.line >= 1 && e.column >= 1);
            return;
        }
    };
    for (i, p) in manifest.programs.iter().enumerate() {
        assert!(manifest.programs[..i].iter().all(|q| q.name != p.name), "duplicate program");
        assert_eq!(manifest.program(&p.name), Some(p));
        if let Some(after) = &p.after {
            assert!(after != &p.name && manifest.program(after).is_some());
        }
        for (j, g) in p.grants.iter().enumerate() {
            assert!(!p.grants[..j].contains(g), "grant listed twice");
            if let Some(device) = g.device() {
                assert!(manifest.device(device).is_some(), "undeclared device {device}");
            }
            match g {
                Grant::DeviceMemory { bar, .. } => assert!(*bar <= MAX_BAR),
                Grant::Interrupt(InterruptSource::Isa(irq), _) => assert!(*irq <= MAX_ISA_IRQ),
                Grant::IoPorts { first, last } => assert!(first <= last),
                _ => {}
            }
        }
        // `after` chains end: following them visits each program at most once.
        let mut at = p;
        for _ in 0..=manifest.programs.len() {
            match &at.after {
                Some(next) => at = manifest.program(next).unwrap(),
                None => break,
            }
        }
        assert!(at.after.is_none(), "after cycle through {}", p.name);
    }
    for (i, d) in manifest.devices.iter().enumerate() {
        assert!(manifest.devices[..i].iter().all(|e| e.name != d.name), "duplicate device");
    }
    let printed = print_manifest(&manifest);
    match parse(&printed) {
        Ok(again) => assert_eq!(again, manifest, "round trip changed it:\n{printed}"),
        Err(e) => panic!("printed manifest refused ({e:?}):\n{printed}"),
    }
});
