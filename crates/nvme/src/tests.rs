use crate::command::*;
use crate::completion::*;
use crate::identify::{self, Controller, Namespace};
use crate::regs::*;

#[test]
fn cap_fields() {
    // QEMU's nvme: MQES 2047, CQR, TO 15 (7.5 s), DSTRD 0, NVM set, MPSMIN 0, MPSMAX 4.
    let cap = Cap(0x07FF | 1 << 16 | 0x0F << 24 | 1 << 37 | 4 << 52);
    assert_eq!(cap.max_queue_entries(), 2048);
    assert!(cap.contiguous_queues_required());
    assert_eq!(cap.timeout_ms(), 7500);
    assert_eq!(cap.doorbell_stride(), 4);
    assert!(cap.supports_nvm_command_set());
    assert_eq!(cap.page_size_min(), 4096);
    assert_eq!(cap.page_size_max(), 65536);
    let wide = Cap(3 << 32 | 2 << 48);
    assert_eq!(wide.doorbell_stride(), 32);
    assert_eq!(wide.page_size_min(), 16384);
    assert!(!wide.supports_nvm_command_set() && !wide.contiguous_queues_required());
    assert_eq!(Cap(0xFFFF).max_queue_entries(), 65536);
}

#[test]
fn doorbell_offsets() {
    assert_eq!(sq_tail_doorbell(0, 4), 0x1000);
    assert_eq!(cq_head_doorbell(0, 4), 0x1004);
    assert_eq!(sq_tail_doorbell(1, 4), 0x1008);
    assert_eq!(cq_head_doorbell(1, 4), 0x100C);
    assert_eq!(sq_tail_doorbell(3, 32), 0x1000 + 6 * 32);
    assert_eq!(cq_head_doorbell(3, 32), 0x1000 + 7 * 32);
    assert_eq!(cq_head_doorbell(u16::MAX, 4), 0x1000 + (2 * 65535 + 1) * 4);
}

#[test]
fn configuration_values() {
    assert_eq!(cc_enable(4096), Some(0x0046_0001));
    assert_eq!(cc_enable(8192), Some(0x0046_0081));
    assert_eq!(cc_enable(2048), None);
    assert_eq!(cc_enable(6000), None);
    assert_eq!(cc_enable(1 << 28), None);
    assert_eq!(aqa(32, 32), Some(0x001F_001F));
    assert_eq!(aqa(4096, 2), Some(0x0001_0FFF));
    assert_eq!(aqa(1, 32), None);
    assert_eq!(aqa(32, 4097), None);
}

#[test]
fn submission_entries_have_the_spec_layout() {
    let c = Command::identify(0x1234, CNS_CONTROLLER, 0, 0xDEAD_B000);
    let b = c.to_bytes();
    assert_eq!(&b[0..4], &[ADMIN_IDENTIFY, 0, 0x34, 0x12]);
    assert_eq!(&b[24..32], &0xDEAD_B000u64.to_le_bytes());
    assert_eq!(&b[40..44], &1u32.to_le_bytes());
    assert_eq!(Command::from_bytes(&b), c);

    let cq = Command::create_io_cq(2, 1, 64, 0x1_0000_2000, 1, false);
    let d = Command::from_bytes(&cq.to_bytes());
    assert_eq!(d.opcode, ADMIN_CREATE_IO_CQ);
    assert_eq!(d.cdw[0], 63 << 16 | 1);
    assert_eq!(d.cdw[1], 1 << 16 | 1); // vector 1, polled, contiguous
    assert_eq!(d.prp1, 0x1_0000_2000);
    assert_eq!(Command::create_io_cq(2, 1, 64, 0, 3, true).cdw[1], 3 << 16 | 0b11);

    let sq = Command::create_io_sq(3, 1, 64, 0x3000, 1);
    assert_eq!(sq.opcode, ADMIN_CREATE_IO_SQ);
    assert_eq!(sq.cdw[0], 63 << 16 | 1);
    assert_eq!(sq.cdw[1], 1 << 16 | 1);

    let prp = Prp { prp1: 0x5000, prp2: 0x6000 };
    let r = Command::read(9, 1, 0x1_2345_6789, 8, prp);
    let b = r.to_bytes();
    assert_eq!(b[0], IO_READ);
    assert_eq!(&b[4..8], &1u32.to_le_bytes());
    assert_eq!(&b[32..40], &0x6000u64.to_le_bytes());
    assert_eq!(&b[40..44], &0x2345_6789u32.to_le_bytes());
    assert_eq!(&b[44..48], &1u32.to_le_bytes());
    assert_eq!(&b[48..52], &7u32.to_le_bytes());
    assert_eq!(Command::write(9, 1, 0, 1, prp).opcode, IO_WRITE);
    assert_eq!(Command::write(9, 1, 0, 1, prp).cdw[2], 0);
}

#[test]
fn number_of_queues_request_and_grant() {
    let c = Command::set_queue_count(7, 64);
    let b = c.to_bytes();
    assert_eq!(b[0], ADMIN_SET_FEATURES);
    assert_eq!(&b[40..44], &7u32.to_le_bytes(), "FID 07h in CDW10");
    assert_eq!(&b[44..48], &(63u32 << 16 | 63).to_le_bytes(), "NCQR and NSQR 0-based");
    assert_eq!(Command::set_queue_count(7, 1).cdw[1], 0);
    // QEMU's `max_ioqpairs=64` answers 63 both ways; the smaller of the two counts.
    assert_eq!(granted_queue_pairs(63 << 16 | 63), 64);
    assert_eq!(granted_queue_pairs(3 << 16 | 7), 4);
    assert_eq!(granted_queue_pairs(0), 1);
}

#[test]
fn prps_for_one_and_two_pages() {
    const P: u64 = 4096;
    assert_eq!(Prp::for_buffer(0x10_000, 4096, P), Ok(Prp { prp1: 0x10_000, prp2: 0 }));
    assert_eq!(Prp::for_buffer(0x10_000, 8192, P), Ok(Prp { prp1: 0x10_000, prp2: 0x11_000 }));
    // Starting inside a page: 4 KiB spans two pages, PRP2 is the second page's start.
    assert_eq!(Prp::for_buffer(0x10_200, 4096, P), Ok(Prp { prp1: 0x10_200, prp2: 0x11_000 }));
    assert_eq!(Prp::for_buffer(0x10_FFC, 4, P), Ok(Prp { prp1: 0x10_FFC, prp2: 0 }));
    assert_eq!(Prp::for_buffer(0x10_000, 8193, P), Err(PrpError::NeedsList));
    assert_eq!(Prp::for_buffer(0x10_200, 8192, P), Err(PrpError::NeedsList));
    assert_eq!(Prp::for_buffer(0x10_002, 512, P), Err(PrpError::Misaligned));
    assert_eq!(Prp::for_buffer(0x10_000, 0, P), Err(PrpError::Empty));
}

#[test]
fn completion_entries_decode() {
    // DW0 7, SQ head 5 of SQ 1, CID 0x42, phase 1, SCT 0 SC 0x80 (LBA out of range), DNR.
    let dw3: u32 = 0x42 | 1 << 16 | (0x80 | 1 << 14) << 17;
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&7u32.to_le_bytes());
    b[8..12].copy_from_slice(&(5u32 | 1 << 16).to_le_bytes());
    b[12..16].copy_from_slice(&dw3.to_le_bytes());
    let c = Completion::from_bytes(&b);
    assert_eq!((c.result, c.sq_head, c.sq_id, c.cid, c.phase), (7, 5, 1, 0x42, true));
    assert_eq!(c.status_code(), SC_LBA_OUT_OF_RANGE);
    assert_eq!(c.status_code_type(), 0);
    assert!(c.do_not_retry() && !c.succeeded());
    assert_eq!(c.to_bytes(), b);
    let ok = Completion { status: 0, ..c };
    assert!(ok.succeeded());
    let sct = Completion { status: 1 << 8, ..c };
    assert!(!sct.succeeded());
}

fn identify_controller() -> [u8; identify::SIZE] {
    let mut b = [0u8; identify::SIZE];
    b[0..2].copy_from_slice(&0x1B36u16.to_le_bytes());
    b[4..24].copy_from_slice(b"keel-disk-0         ");
    b[24..64].copy_from_slice(b"QEMU NVMe Ctrl                          ");
    b[77] = 7;
    b[78..80].copy_from_slice(&0u16.to_le_bytes());
    b[80..84].copy_from_slice(&0x0001_0400u32.to_le_bytes());
    b[512] = 0x66;
    b[513] = 0x44;
    b[516..520].copy_from_slice(&256u32.to_le_bytes());
    b
}

#[test]
fn identify_controller_fields() {
    let c = Controller::parse(&identify_controller());
    assert_eq!(c.vid, 0x1B36);
    assert_eq!(c.serial_str(), "keel-disk-0");
    assert_eq!(c.model_str(), "QEMU NVMe Ctrl");
    assert_eq!(c.version, 0x0001_0400);
    assert_eq!(c.nn, 256);
    assert!(c.takes_standard_entries());
    assert_eq!(c.max_transfer(4096), Some(512 * 1024));
    let mut b = identify_controller();
    b[512] = 0x77; // 128-byte entries only
    assert!(!Controller::parse(&b).takes_standard_entries());
    b[77] = 0;
    assert_eq!(Controller::parse(&b).max_transfer(4096), None);
}

#[test]
fn identify_namespace_fields() {
    let mut b = [0u8; identify::SIZE];
    b[0..8].copy_from_slice(&2048u64.to_le_bytes());
    b[8..16].copy_from_slice(&2048u64.to_le_bytes());
    b[25] = 1; // two formats
    b[26] = 1; // the second in use
    b[128..132].copy_from_slice(&(9u32 << 16).to_le_bytes());
    b[132..136].copy_from_slice(&(12u32 << 16 | 8).to_le_bytes());
    let ns = Namespace::parse(&b).unwrap();
    assert_eq!(ns.nsze, 2048);
    assert_eq!(ns.block_size(), 4096);
    assert_eq!(ns.metadata_size, 8);
    assert_eq!(ns.bytes(), 8 << 20);
    b[26] = 0;
    assert_eq!(Namespace::parse(&b).unwrap().block_size(), 512);
    b[26] = 2; // past NLBAF
    assert_eq!(Namespace::parse(&b), None);
    b[26] = 0;
    b[128..132].copy_from_slice(&0u32.to_le_bytes()); // LBADS 0: format unsupported
    assert_eq!(Namespace::parse(&b), None);
    // Above 16 formats the index's upper bits are FLBAS bits 6:5: 0x21 is format 17.
    b[25] = 17;
    b[26] = 0x21;
    b[128 + 4 * 17..132 + 4 * 17].copy_from_slice(&(13u32 << 16).to_le_bytes());
    assert_eq!(Namespace::parse(&b).unwrap().block_size(), 8192);
    b[25] = 16;
    assert_eq!(Namespace::parse(&b), None);
}

#[test]
fn the_disk_pattern_differs_by_offset_and_seed() {
    use crate::pattern::*;
    let mut a = [0u64; 512];
    fill(&mut a, 4096, IMAGE_SEED);
    assert_eq!(mismatches(&a, 4096, IMAGE_SEED), 0);
    assert_eq!(mismatches(&a, 0, IMAGE_SEED), 512, "another block's data never matches");
    assert_eq!(mismatches(&a, 4096, WRITE_SEED), 512);
    a[100] ^= 1;
    assert_eq!(mismatches(&a, 4096, IMAGE_SEED), 1);
    assert_ne!(word(0, IMAGE_SEED), 0);
}
