//! The plain kernel image must contain no proof scenario and no test-only hook: checked on
//! the ELF files' symbol tables, against the scenarios image as the control (each symbol
//! looked for must be there, or the check could not fail).

use std::path::Path;

use anyhow::{bail, Context, Result};

/// What the `scenarios` feature adds, by a fragment of its (mangled) symbol names.
pub const LEFT_OUT: &[(&str, &str)] = &[
    ("the scenarios module", "4keel9scenarios"),
    ("the irq_target=boot hook", "IRQS_TO_BOOT_CPU"),
    ("the entry=int80 hook", "INT80_BY_DEFAULT"),
    ("the smp_abandon hook", "7late_ap6CHOSEN"),
    ("the ping counters of the smp scenarios", "10PINGS_SENT"),
];

/// Fails unless every [`LEFT_OUT`] fragment names a symbol of `scenarios` and none of `plain`;
/// returns how many matching symbols the scenarios image has, for the log.
pub fn check_scenarios_left_out(plain: &Path, scenarios: &Path) -> Result<usize> {
    let plain_syms = symbols_of(plain)?;
    let scenario_syms = symbols_of(scenarios)?;
    let mut total = 0;
    for (what, fragment) in LEFT_OUT {
        let count = |syms: &[String]| syms.iter().filter(|s| s.contains(fragment)).count();
        let (in_plain, in_scenarios) = (count(&plain_syms), count(&scenario_syms));
        if in_scenarios == 0 {
            bail!(
                "{}: no symbol with {fragment:?} ({what}): the check has nothing to look for",
                scenarios.display()
            );
        }
        if in_plain > 0 {
            bail!(
                "{}: {in_plain} symbols of {what} ({fragment:?}) in the plain image",
                plain.display()
            );
        }
        total += in_scenarios;
    }
    Ok(total)
}

fn symbols_of(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    elf_symbols(&bytes).with_context(|| format!("{}: symbol table", path.display()))
}

/// Names in the `.symtab` of a little-endian ELF64 file.
pub fn elf_symbols(elf: &[u8]) -> Result<Vec<String>> {
    let field = |at: usize, len: usize| -> Result<u64> {
        let b = elf.get(at..at + len).context("truncated ELF")?;
        Ok(b.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64))
    };
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        bail!("not a little-endian ELF64 file");
    }
    let (shoff, shentsize, shnum) =
        (field(0x28, 8)? as usize, field(0x3a, 2)? as usize, field(0x3c, 2)? as usize);
    let section = |i: usize| -> Result<(u32, usize, usize, usize, usize)> {
        let h = shoff + i * shentsize;
        // sh_type, sh_offset, sh_size, sh_link, sh_entsize
        Ok((
            field(h + 4, 4)? as u32,
            field(h + 0x18, 8)? as usize,
            field(h + 0x20, 8)? as usize,
            field(h + 0x28, 4)? as usize,
            field(h + 0x38, 8)? as usize,
        ))
    };
    const SHT_SYMTAB: u32 = 2;
    let Some((_, offset, size, link, entsize)) = (0..shnum)
        .map(section)
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .find(|s| s.0 == SHT_SYMTAB)
    else {
        bail!("no .symtab (stripped?)");
    };
    let (_, str_offset, str_size, _, _) = section(link)?;
    let strings = elf.get(str_offset..str_offset + str_size).context("truncated string table")?;
    let mut names = Vec::new();
    for sym in (offset..offset + size).step_by(entsize.max(1)) {
        let name = field(sym, 4)? as usize;
        let end = strings
            .get(name..)
            .and_then(|s| s.iter().position(|&b| b == 0))
            .context("bad symbol name offset")?;
        names.push(String::from_utf8_lossy(&strings[name..name + end]).into_owned());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64: null section, `.symtab` with a null and two named symbols, `.strtab`.
    fn tiny_elf(names: &[&str]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for n in names {
            let at = strtab.len() as u32;
            strtab.extend_from_slice(n.as_bytes());
            strtab.push(0);
            let mut sym = vec![0u8; 24];
            sym[..4].copy_from_slice(&at.to_le_bytes());
            symtab.extend(sym);
        }
        let sym_off = 64;
        let str_off = sym_off + symtab.len();
        let shoff = str_off + strtab.len();
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf.extend(&symtab);
        elf.extend(&strtab);
        let header = |kind: u32, off: usize, size: usize, link: u32, entsize: u64| {
            let mut h = vec![0u8; 64];
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h[0x28..0x2c].copy_from_slice(&link.to_le_bytes());
            h[0x38..0x40].copy_from_slice(&entsize.to_le_bytes());
            h
        };
        elf.extend(vec![0u8; 64]);
        elf.extend(header(2, sym_off, symtab.len(), 2, 24));
        elf.extend(header(3, str_off, strtab.len(), 0, 0));
        elf
    }

    #[test]
    fn reads_symbol_names() {
        let elf = tiny_elf(&["_ZN4keel9scenarios3run17hE", "kernel_entry"]);
        assert_eq!(elf_symbols(&elf).unwrap(), ["", "_ZN4keel9scenarios3run17hE", "kernel_entry"]);
        assert!(elf_symbols(&elf[..40]).is_err());
    }

    #[test]
    fn plain_image_with_scenario_code_fails() {
        let dir = std::env::temp_dir().join(format!("keel-images-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let all: Vec<&str> = LEFT_OUT.iter().map(|(_, f)| *f).collect();
        let (plain, scenarios, leaky) =
            (dir.join("plain"), dir.join("scenarios"), dir.join("leaky"));
        std::fs::write(&plain, tiny_elf(&["kernel_entry"])).unwrap();
        std::fs::write(&scenarios, tiny_elf(&all)).unwrap();
        std::fs::write(
            &leaky,
            tiny_elf(&["kernel_entry", "_ZN4keel4task6loader16IRQS_TO_BOOT_CPU17hE"]),
        )
        .unwrap();
        assert_eq!(check_scenarios_left_out(&plain, &scenarios).unwrap(), LEFT_OUT.len());
        assert!(check_scenarios_left_out(&leaky, &scenarios).is_err());
        // A control without the symbols cannot vouch for anything.
        assert!(check_scenarios_left_out(&plain, &plain).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
