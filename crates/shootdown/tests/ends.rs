//! CPU masks and sets filled to their last bit: 1,024 CPUs (the proofs' largest machine)
//! and `MAX_CPUS`, at every word end, and indices past the end.

use keel_shootdown::{CpuMask, CpuSet, MAX_CPUS};

const LAST: u32 = MAX_CPUS as u32 - 1;

#[test]
fn masks_fill_to_the_last_cpu_and_empty_again() {
    for cpus in [1024u32, MAX_CPUS as u32] {
        let m = CpuMask::new();
        (0..cpus).for_each(|c| m.insert(c));
        assert!((0..cpus).all(|c| m.contains(c)) && !m.contains(cpus));
        assert_eq!(m.iter().collect::<Vec<_>>(), (0..cpus).collect::<Vec<_>>());
        let snapshot = m.snapshot();
        assert_eq!(snapshot.len(), cpus as usize);
        let words: Vec<_> = m.words().collect();
        assert_eq!(words.len(), cpus as usize / 64, "one word per 64 CPUs, no more");
        let last = words.last().unwrap();
        assert_eq!((last.first(), last.bits(), last.len()), (cpus - 64, u64::MAX, 64));
        assert_eq!(last.into_iter().last(), Some(cpus - 1));
        (0..cpus).rev().for_each(|c| m.remove(c));
        assert!(m.is_empty() && m.iter().next().is_none());
        assert_eq!(m.words().len(), cpus as usize / 64, "the high-water mark stays");
    }
}

#[test]
fn indices_past_the_end_are_ignored() {
    let m = CpuMask::new();
    for cpu in [MAX_CPUS as u32, MAX_CPUS as u32 + 63, u32::MAX] {
        m.insert(cpu);
        assert!(!m.contains(cpu));
        m.remove(cpu);
    }
    assert!(m.is_empty() && m.words().len() == 0);
    let mut s = CpuSet::default();
    s.insert(u32::MAX);
    s.insert(MAX_CPUS as u32);
    assert!(s.is_empty() && s.into_iter().next().is_none());
    assert!(!s.remove(u32::MAX) && !s.contains(MAX_CPUS as u32));
}

#[test]
fn every_word_end_is_a_member_of_its_own_word() {
    let m = CpuMask::new();
    let ends: Vec<u32> = (0..MAX_CPUS as u32 / 64).flat_map(|w| [w * 64, w * 64 + 63]).collect();
    ends.iter().for_each(|&c| m.insert(c));
    for word in m.words() {
        assert_eq!(word.bits(), 1 | 1 << 63, "word {}", word.first());
        let mut w = word;
        assert!(!w.remove(word.first().wrapping_sub(1)) && !w.remove(word.first() + 64));
        assert!(w.remove(word.first() + 63) && w.remove(word.first()) && w.is_empty());
    }
    let mut s = m.snapshot();
    assert_eq!(s.into_iter().collect::<Vec<_>>(), ends);
    assert!(s.remove(LAST) && !s.contains(LAST) && s.contains(LAST - 63));
    assert_eq!(s.len(), ends.len() - 1);
    s.insert(LAST);
    assert_eq!(s, m.snapshot());
}
