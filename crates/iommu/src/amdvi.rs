//! AMD-Vi register values, device table entries and commands (AMD IOMMU spec 2.2, 2.4,
//! 3.4), built here so host tests check the bit layouts the kernel writes.
//!
//! What a pass-through bring-up needs: the device table and command buffer base registers,
//! the control bits that enable translation and the command buffer, a device table entry
//! that passes a requester's interrupts (and DMA) through untranslated, and the
//! INVALIDATE_DEVTAB_ENTRY, INVALIDATE_INTERRUPT_TABLE and COMPLETION_WAIT commands.

/// Register offsets in the unit's MMIO block.
pub mod reg {
    /// Device table base address and size.
    pub const DEVICE_TABLE_BASE: usize = 0x0000;
    /// Command buffer base address and length.
    pub const COMMAND_BUFFER_BASE: usize = 0x0008;
    /// Control register.
    pub const CONTROL: usize = 0x0018;
    /// Extended feature register.
    pub const EXTENDED_FEATURES: usize = 0x0030;
    /// Command buffer head pointer (byte offset, bits 18:4).
    pub const COMMAND_HEAD: usize = 0x2000;
    /// Command buffer tail pointer (byte offset, bits 18:4).
    pub const COMMAND_TAIL: usize = 0x2008;
}

/// Control register bits.
pub mod control {
    /// Bit 0, IommuEn: the unit translates (DMA and interrupts, per device table entry).
    pub const IOMMU_EN: u64 = 1 << 0;
    /// Bit 12, CmdBufEn: the unit fetches commands.
    pub const CMD_BUF_EN: u64 = 1 << 12;
}

/// Bytes of one device table entry.
pub const DTE_BYTES: usize = 32;
/// Bytes of one command.
pub const COMMAND_BYTES: usize = 16;
/// Device table entries per 4-KiB page.
pub const DTES_PER_PAGE: usize = 4096 / DTE_BYTES;
/// log2 of the command buffer's entries: 256 commands, one 4-KiB page (the minimum).
pub const COMMAND_BUFFER_LOG2: u32 = 8;

/// The device table base register for a table of `pages` 4-KiB pages at `phys`; `None`
/// when `phys` is not page-aligned or the size is outside 1..=512 pages (2 MiB, 65,536
/// entries).
pub fn device_table_base(phys: u64, pages: u64) -> Option<u64> {
    (phys & 0xFFF == 0 && (1..=512).contains(&pages) && phys >> 52 == 0).then(|| phys | (pages - 1))
}

/// The command buffer base register for a one-page buffer of 256 commands at `phys`.
pub fn command_buffer_base(phys: u64) -> Option<u64> {
    (phys & 0xFFF == 0 && phys >> 52 == 0).then_some(phys | (COMMAND_BUFFER_LOG2 as u64) << 56)
}

/// DTE bits, as four quadwords.
pub mod dte {
    /// Quadword 0 bit 0, V: the entry is valid.
    pub const VALID: u64 = 1 << 0;
    /// Quadword 0 bit 1, TV: the translation fields are valid (off: DMA untranslated).
    pub const TRANSLATION_VALID: u64 = 1 << 1;
    /// Quadword 0 bit 61, IR: untranslated DMA reads allowed.
    pub const IR: u64 = 1 << 61;
    /// Quadword 0 bit 62, IW: untranslated DMA writes allowed.
    pub const IW: u64 = 1 << 62;
    /// Quadword 2 bit 0, IV: the interrupt fields are valid.
    pub const INTERRUPT_VALID: u64 = 1 << 0;
    /// Quadword 2 bits 61:60, IntCtl.
    pub const INT_CTL_SHIFT: u32 = 60;
    /// IntCtl 01b: fixed and arbitrated interrupts pass untranslated.
    pub const INT_CTL_PASS: u64 = 1;
    /// IntCtl 10b: fixed and arbitrated interrupts are remapped through the table.
    pub const INT_CTL_REMAP: u64 = 2;
    /// Quadword 2 bit 56, INITPass.
    pub const INIT_PASS: u64 = 1 << 56;
    /// Quadword 2 bit 57, EIntPass.
    pub const EINT_PASS: u64 = 1 << 57;
    /// Quadword 2 bit 58, NMIPass.
    pub const NMI_PASS: u64 = 1 << 58;
    /// Quadword 2 bit 62, Lint0Pass.
    pub const LINT0_PASS: u64 = 1 << 62;
    /// Quadword 2 bit 63, Lint1Pass.
    pub const LINT1_PASS: u64 = 1 << 63;
}

/// A device table entry that lets the requester's DMA and interrupts through untranslated:
/// valid, no page table (TV = 0) with reads and writes allowed, and the interrupt fields
/// not valid (IV = 0), so every interrupt request passes unmodified.
///
/// Not IV = 1 with IntCtl = pass: QEMU 10.0 then rebuilds each fixed interrupt from an
/// empty record (vector 0 to APIC ID 0), so device MSIs are lost. The IVRS's INIT/ExtInt/
/// NMI/LINT pass settings only matter with IV = 1 ([`interrupt_pass_quad`]).
pub fn passthrough_dte() -> [u64; 4] {
    [dte::VALID | dte::IR | dte::IW, 0, 0, 0]
}

/// Quadword 2 of an entry with IV = 1, IntCtl = pass and the INIT/ExtInt/NMI/LINT pass bits
/// of an IVRS `setting` byte (bit 0 INITPass, 1 EIntPass, 2 NMIPass, 6 Lint0Pass, 7
/// Lint1Pass; SysMgt, bits 5:4, is not an interrupt pass bit).
pub fn interrupt_pass_quad(setting: u8) -> u64 {
    let pass = |bit: u8, flag: u64| if setting & (1 << bit) != 0 { flag } else { 0 };
    dte::INTERRUPT_VALID
        | dte::INT_CTL_PASS << dte::INT_CTL_SHIFT
        | pass(0, dte::INIT_PASS)
        | pass(1, dte::EINT_PASS)
        | pass(2, dte::NMI_PASS)
        | pass(6, dte::LINT0_PASS)
        | pass(7, dte::LINT1_PASS)
}

/// What a DTE does with a requester's fixed interrupts (decoded for evidence).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntCtl {
    /// IV = 0: the interrupt fields are ignored and interrupts pass unmodified.
    NotValid,
    /// IntCtl 00b: target abort.
    Abort,
    /// IntCtl 01b: pass untranslated.
    Pass,
    /// IntCtl 10b: remapped through the interrupt table.
    Remap,
    /// IntCtl 11b: reserved.
    Reserved,
}

impl IntCtl {
    /// Decodes quadword 2 of a DTE.
    pub fn of(q2: u64) -> IntCtl {
        if q2 & dte::INTERRUPT_VALID == 0 {
            return IntCtl::NotValid;
        }
        match (q2 >> dte::INT_CTL_SHIFT) & 3 {
            0 => IntCtl::Abort,
            1 => IntCtl::Pass,
            2 => IntCtl::Remap,
            _ => IntCtl::Reserved,
        }
    }

    /// A short name for evidence.
    pub fn name(self) -> &'static str {
        match self {
            IntCtl::NotValid => "iv-off-pass",
            IntCtl::Abort => "abort",
            IntCtl::Pass => "pass",
            IntCtl::Remap => "remap",
            IntCtl::Reserved => "reserved",
        }
    }
}

/// Command opcodes (bits 63:60 of the first quadword).
pub mod opcode {
    /// COMPLETION_WAIT.
    pub const COMPLETION_WAIT: u64 = 0x1;
    /// INVALIDATE_DEVTAB_ENTRY.
    pub const INVALIDATE_DEVTAB_ENTRY: u64 = 0x2;
    /// INVALIDATE_INTERRUPT_TABLE.
    pub const INVALIDATE_INTERRUPT_TABLE: u64 = 0x5;
}

const OPCODE_SHIFT: u32 = 60;

/// COMPLETION_WAIT with store: once every earlier command completed, the unit writes `data`
/// to `store_phys` (8-byte aligned). `None` for an unaligned or too-wide address.
pub fn completion_wait(store_phys: u64, data: u64) -> Option<[u64; 2]> {
    (store_phys & 7 == 0 && store_phys >> 52 == 0)
        .then_some([store_phys | 1 | opcode::COMPLETION_WAIT << OPCODE_SHIFT, data])
}

/// INVALIDATE_DEVTAB_ENTRY for one requester id.
pub fn invalidate_devtab_entry(device_id: u16) -> [u64; 2] {
    [device_id as u64 | opcode::INVALIDATE_DEVTAB_ENTRY << OPCODE_SHIFT, 0]
}

/// INVALIDATE_INTERRUPT_TABLE for one requester id.
pub fn invalidate_interrupt_table(device_id: u16) -> [u64; 2] {
    [device_id as u64 | opcode::INVALIDATE_INTERRUPT_TABLE << OPCODE_SHIFT, 0]
}

/// The tail (or head) register value after `commands` commands from the buffer's start.
pub fn ring_offset(commands: usize) -> u64 {
    ((commands % (1 << COMMAND_BUFFER_LOG2)) * COMMAND_BYTES) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_registers() {
        assert_eq!(device_table_base(0x12_3000, 2), Some(0x12_3001));
        assert_eq!(device_table_base(0x12_3000, 512), Some(0x12_31FF));
        assert_eq!(device_table_base(0x12_3000, 0), None);
        assert_eq!(device_table_base(0x12_3000, 513), None);
        assert_eq!(device_table_base(0x12_3800, 1), None);
        assert_eq!(command_buffer_base(0x45_6000), Some(0x0800_0000_0045_6000));
        assert_eq!(command_buffer_base(0x45_6010), None);
    }

    #[test]
    fn passthrough_dte_layout() {
        let d = passthrough_dte();
        assert_eq!(d[0], 1 | 1 << 61 | 1 << 62);
        assert_eq!(d[0] & dte::TRANSLATION_VALID, 0);
        assert_eq!((d[1], d[2], d[3]), (0, 0, 0));
        assert_eq!(IntCtl::of(d[2]), IntCtl::NotValid);
        // QEMU's reserved-bit mask for quadword 0 (`amdvi_validate_dte`).
        assert_eq!(d[0] & 0x8030_0000_0000_00FC, 0);
        let q2 = interrupt_pass_quad(0);
        assert_eq!(q2, 1 | 1 << 60);
        assert_eq!(IntCtl::of(q2), IntCtl::Pass);
        // All of INITPass, EIntPass, NMIPass, Lint0Pass, Lint1Pass (SysMgt bits 5:4 ignored).
        let q2 = interrupt_pass_quad(0xFF);
        assert_eq!(q2, 1 | 1 << 60 | 0b111 << 56 | 0b11 << 62);
        assert_eq!(q2 & 0x08F0_0000_0000_0000, 0);
        assert_eq!(IntCtl::of(0), IntCtl::NotValid);
        assert_eq!(IntCtl::of(1), IntCtl::Abort);
        assert_eq!(IntCtl::of(1 | 2 << 60), IntCtl::Remap);
        assert_eq!(IntCtl::of(1 | 3 << 60), IntCtl::Reserved);
    }

    #[test]
    fn commands() {
        let c = completion_wait(0x7F_E000, 0xC0FFEE).unwrap();
        assert_eq!(c, [0x1000_0000_007F_E001, 0xC0FFEE]);
        assert_eq!(c[0] >> 60, 1);
        assert_eq!(c[0] & 0x000F_FFFF_FFFF_FFF8, 0x7F_E000); // QEMU's store-address mask
        assert_eq!(completion_wait(0x7F_E004, 0), None);
        assert_eq!(invalidate_devtab_entry(0xA0), [0x2000_0000_0000_00A0, 0]);
        assert_eq!(invalidate_interrupt_table(0x20), [0x5000_0000_0000_0020, 0]);
        assert_eq!(ring_offset(0), 0);
        assert_eq!(ring_offset(3), 48);
        assert_eq!(ring_offset(256), 0);
    }
}
