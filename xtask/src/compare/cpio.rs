//! A minimal `newc` cpio writer for the Linux guest's initramfs (no `cpio(1)` needed;
//! the kernel accepts an uncompressed archive).

use std::fmt::Write as _;

#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let mut h = String::from("070701");
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        for v in [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ] {
            let _ = write!(h, "{v:08x}");
        }
        self.out.extend_from_slice(h.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }
    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
    pub fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[]);
    }
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, data);
    }
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn newc_layout() {
        let mut c = super::Cpio::default();
        c.dir("bin");
        c.file("init", 0o755, b"#!x\n");
        let a = c.finish();
        assert_eq!(&a[..6], b"070701");
        assert_eq!(&a[6..14], b"00000001");
        assert_eq!(&a[14..22], b"000041ed");
        assert_eq!(&a[110..114], b"bin\0");
        // Second header is 4-byte aligned right after "bin\0" + pad (110+4=114 -> 116).
        assert_eq!(&a[116..122], b"070701");
        assert_eq!(a.len() % 512, 0);
        let s = String::from_utf8_lossy(&a);
        assert!(s.contains("init\0") && s.contains("#!x\n") && s.contains("TRAILER!!!"));
    }
}
