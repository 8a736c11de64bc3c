use super::*;
use keel_testkit::XorShift;

/// Keel's device range on x86_64: 0x50..=0xDF (144 vectors per CPU).
const DEVICE: RangeInclusive<u8> = 0x50..=0xDF;

#[test]
fn empty_matrices_are_refused() {
    assert_eq!(Matrix::new(0, DEVICE).unwrap_err(), AllocError::EmptyMatrix);
    #[allow(clippy::reversed_empty_ranges)]
    let reversed = 0x60..=0x50;
    assert_eq!(Matrix::new(4, reversed).unwrap_err(), AllocError::EmptyMatrix);
}

#[test]
fn each_cpu_has_its_own_space() {
    let mut m = Matrix::new(4, DEVICE).unwrap();
    for cpu in 0..4 {
        assert_eq!(m.allocate(Placement::Cpu(cpu), Owner(cpu)), Ok((cpu, 0x50)));
    }
    for cpu in 0..4 {
        assert_eq!(m.owner(cpu, 0x50), Some(Owner(cpu)));
        assert_eq!(m.allocated_on(cpu), Some(1));
        assert_eq!(m.available_on(cpu), Some(143));
    }
    assert_eq!(m.total_allocated(), 4);
    assert_eq!(m.global_available(), 4 * 143);
    assert_eq!(m.owner(0, 0x51), None);
    assert_eq!(m.owner(4, 0x50), None);
    assert_eq!(m.owner(0, 0x4F), None);
    m.check().unwrap();
}

#[test]
fn exhaustion_reaches_the_last_vector_of_the_range() {
    // A range ending at 255 ends at the last bit of the last bitmap word.
    for range in [DEVICE, 0x20..=0xFF, 0..=0xFF, 0xFF..=0xFF, 0x3F..=0x40] {
        let len = *range.end() as u32 - *range.start() as u32 + 1;
        let mut m = Matrix::new(2, range.clone()).unwrap();
        let mut got = Vec::new();
        for i in 0..len {
            let (cpu, v) = m.allocate(Placement::Cpu(1), Owner(i)).unwrap();
            assert_eq!(cpu, 1);
            got.push(v);
        }
        let expected: Vec<u8> = range.clone().collect();
        assert_eq!(got, expected, "lowest first, every vector, up to {:#x}", range.end());
        assert_eq!(m.allocate(Placement::Cpu(1), Owner(999)), Err(AllocError::CpuFull));
        assert_eq!(m.available_on(1), Some(0));
        assert_eq!(m.owner(1, *range.end()), Some(Owner(len - 1)));
        // The other CPU is untouched and takes the overflow.
        assert_eq!(m.available_on(0), Some(len));
        assert_eq!(m.allocate(Placement::LeastLoaded(&[1, 0]), Owner(7)), Ok((0, *range.start())));
        m.check().unwrap();
    }
}

#[test]
fn a_full_cpu_sends_placement_elsewhere() {
    let mut m = Matrix::new(3, DEVICE).unwrap();
    for i in 0..144 {
        m.allocate(Placement::Cpu(2), Owner(i)).unwrap();
    }
    assert_eq!(m.allocate(Placement::Cpu(2), Owner(1000)), Err(AllocError::CpuFull));
    let (cpu, _) = m.allocate(Placement::LeastLoaded(&[2, 1]), Owner(1000)).unwrap();
    assert_eq!(cpu, 1);
    // Everything full: the set is exhausted, and so is the machine.
    for i in 0..143 {
        m.allocate(Placement::Cpu(1), Owner(i)).unwrap();
    }
    assert_eq!(m.allocate(Placement::LeastLoaded(&[2, 1]), Owner(1)), Err(AllocError::Exhausted));
    for i in 0..144 {
        m.allocate(Placement::Cpu(0), Owner(i)).unwrap();
    }
    assert_eq!(m.allocate(Placement::AnyOnline, Owner(1)), Err(AllocError::Exhausted));
    assert_eq!(m.global_available(), 0);
    assert_eq!(m.total_allocated(), 3 * 144);
    m.check().unwrap();
}

#[test]
fn release_returns_the_owner_and_the_vector_is_reused() {
    let mut m = Matrix::new(2, DEVICE).unwrap();
    for i in 0..10 {
        m.allocate(Placement::Cpu(0), Owner(i)).unwrap();
    }
    assert_eq!(m.release(0, 0x53), Ok(Owner(3)));
    assert_eq!(m.release(0, 0x53), Err(AllocError::NotAllocated));
    assert_eq!(m.release(1, 0x50), Err(AllocError::NotAllocated));
    assert_eq!(m.release(0, 0x20), Err(AllocError::OutOfRange));
    assert_eq!(m.release(9, 0x50), Err(AllocError::NoSuchCpu));
    assert_eq!(m.owner(0, 0x53), None);
    assert_eq!(m.allocated_on(0), Some(9));
    // The hole is the lowest free vector, so it is taken next.
    assert_eq!(m.allocate(Placement::Cpu(0), Owner(42)), Ok((0, 0x53)));
    assert_eq!(m.owner(0, 0x53), Some(Owner(42)));
    assert_eq!(m.allocate(Placement::Cpu(0), Owner(43)), Ok((0, 0x5A)));
    m.check().unwrap();
}

#[test]
fn fixed_assignments() {
    let mut m = Matrix::new(2, DEVICE).unwrap();
    assert_eq!(m.allocate_at(1, 0xDF, Owner(5)), Ok(()));
    assert_eq!(m.allocate_at(1, 0xDF, Owner(6)), Err(AllocError::Taken));
    assert_eq!(m.allocate_at(0, 0xDF, Owner(6)), Ok(()));
    assert_eq!(m.allocate_at(0, 0xE0, Owner(6)), Err(AllocError::OutOfRange));
    assert_eq!(m.allocate_at(2, 0x60, Owner(6)), Err(AllocError::NoSuchCpu));
    assert_eq!(m.owner(1, 0xDF), Some(Owner(5)));
    assert_eq!(m.allocate(Placement::Cpu(1), Owner(7)), Ok((1, 0x50)));
    m.check().unwrap();
}

#[test]
fn system_vectors_are_taken_on_every_cpu() {
    let mut m = Matrix::new(3, DEVICE).unwrap();
    m.reserve_system(0x50).unwrap();
    m.reserve_system(0x30).unwrap(); // outside the range: reserved, changes no count
    assert_eq!(m.reserve_system(0x50), Err(AllocError::Reserved));
    assert!(m.is_system(0x50) && m.is_system(0x30) && !m.is_system(0x51));
    assert_eq!(m.available_on(2), Some(143));
    assert_eq!(m.global_available(), 3 * 143);
    assert_eq!(m.allocate(Placement::Cpu(2), Owner(1)), Ok((2, 0x51)));
    assert_eq!(m.allocate_at(1, 0x50, Owner(1)), Err(AllocError::Reserved));
    // A vector held by a device on some CPU cannot become a system vector.
    assert_eq!(m.reserve_system(0x51), Err(AllocError::Taken));
    for i in 0..143 {
        m.allocate(Placement::Cpu(0), Owner(i)).unwrap();
    }
    assert_eq!(m.allocate(Placement::Cpu(0), Owner(0)), Err(AllocError::CpuFull));
    m.check().unwrap();
}

#[test]
fn offline_cpus_are_never_chosen() {
    let mut m = Matrix::new(4, DEVICE).unwrap();
    m.set_online(1, false).unwrap();
    assert!(!m.is_online(1) && m.is_online(0) && !m.is_online(4));
    assert_eq!(m.set_online(4, false), Err(AllocError::NoSuchCpu));
    assert_eq!(m.allocate(Placement::Cpu(1), Owner(0)), Err(AllocError::CpuOffline));
    assert_eq!(m.allocate_at(1, 0x60, Owner(0)), Err(AllocError::CpuOffline));
    assert_eq!(m.allocate(Placement::LeastLoaded(&[1]), Owner(0)), Err(AllocError::Exhausted));
    assert_eq!(m.allocate(Placement::LeastLoaded(&[]), Owner(0)), Err(AllocError::Exhausted));
    assert_eq!(m.allocate(Placement::LeastLoaded(&[7]), Owner(0)), Err(AllocError::NoSuchCpu));
    for i in 0..30 {
        let (cpu, _) = m.allocate(Placement::AnyOnline, Owner(i)).unwrap();
        assert_ne!(cpu, 1);
    }
    assert_eq!(m.global_available(), 3 * 144 - 30);
    // Its vectors stay allocated when it goes offline, and can be released from there.
    m.set_online(2, false).unwrap();
    let held = m.allocated_on(2).unwrap();
    assert_eq!(held, 10);
    assert_eq!(m.release(2, 0x50), Ok(Owner(1))); // CPUs 0, 2, 3 in turn
    assert_eq!(m.total_allocated(), 29);
    m.check().unwrap();
}

#[test]
fn least_loaded_spreads_evenly_over_4096_cpus() {
    let cpus = 4096u32;
    let mut m = Matrix::new(cpus, DEVICE).unwrap();
    let rounds = 3;
    for i in 0..cpus * rounds {
        let (cpu, v) = m.allocate(Placement::AnyOnline, Owner(i)).unwrap();
        // Round by round, CPU after CPU: the least-loaded CPU, lowest index on a tie.
        assert_eq!(cpu, i % cpus);
        assert_eq!(v, 0x50 + (i / cpus) as u8);
    }
    for cpu in 0..cpus {
        assert_eq!(m.allocated_on(cpu), Some(rounds));
    }
    assert_eq!(m.total_allocated(), (cpus * rounds) as u64);
    assert_eq!(m.global_available(), cpus as u64 * (144 - rounds as u64));
    // A set of the high half only takes from the high half.
    let high: Vec<u32> = (2048..cpus).collect();
    for i in 0..2048 {
        let (cpu, _) = m.allocate(Placement::LeastLoaded(&high), Owner(i)).unwrap();
        assert_eq!(cpu, 2048 + i);
    }
    assert_eq!(m.allocated_on(0), Some(rounds));
    assert_eq!(m.allocated_on(4095), Some(rounds + 1));
    assert_eq!(m.owner(4095, 0x53), Some(Owner(2047)));
    m.check().unwrap();
}

#[test]
fn every_vector_of_4096_cpus_once() {
    let cpus = 4096u32;
    let mut m = Matrix::new(cpus, DEVICE).unwrap();
    let total = cpus as u64 * 144;
    // CPU by CPU (placement by load is covered above; here every bitmap is filled).
    for i in 0..total {
        let cpu = (i / 144) as u32;
        assert_eq!(
            m.allocate(Placement::Cpu(cpu), Owner(i as u32)),
            Ok((cpu, 0x50 + (i % 144) as u8))
        );
    }
    assert_eq!(m.allocate(Placement::AnyOnline, Owner(0)), Err(AllocError::Exhausted));
    assert_eq!(m.total_allocated(), total);
    assert_eq!(m.global_available(), 0);
    assert_eq!(m.owner(4095, 0xDF), Some(Owner(total as u32 - 1)));
    // Releasing one vector on the last CPU makes exactly that one available again.
    m.release(4095, 0xDF).unwrap();
    assert_eq!(m.allocate(Placement::AnyOnline, Owner(1)), Ok((4095, 0xDF)));
    m.check().unwrap();
}

/// Random sequences of every operation, checked against a plain model and the invariant
/// checker after each step.
#[test]
fn random_sequences_keep_the_invariants() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..40 {
        let cpus = 1 + rng.below(9) as u32;
        let first = 0x20 + rng.below(0xC0) as u8;
        let last = first + rng.below((0xFF - first as usize) + 1) as u8;
        let mut m = Matrix::new(cpus, first..=last).unwrap();
        // model[cpu][vector] = owner
        let mut model = vec![[None::<u32>; 256]; cpus as usize];
        let mut system = [false; 256];
        let mut online = vec![true; cpus as usize];
        for step in 0..600u32 {
            let owner = round * 10_000 + step;
            match rng.below(10) {
                0..=3 => {
                    let cpu = rng.below(cpus as usize + 1) as u32;
                    let r = m.allocate(Placement::Cpu(cpu), Owner(owner));
                    if cpu >= cpus {
                        assert_eq!(r, Err(AllocError::NoSuchCpu));
                    } else if !online[cpu as usize] {
                        assert_eq!(r, Err(AllocError::CpuOffline));
                    } else {
                        let free = (first..=last).find(|&v| {
                            !system[v as usize] && model[cpu as usize][v as usize].is_none()
                        });
                        match free {
                            Some(v) => {
                                assert_eq!(r, Ok((cpu, v)));
                                model[cpu as usize][v as usize] = Some(owner);
                            }
                            None => assert_eq!(r, Err(AllocError::CpuFull)),
                        }
                    }
                }
                4..=5 => {
                    let set: Vec<u32> = (0..cpus).filter(|_| rng.below(2) == 0).collect();
                    let r = m.allocate(Placement::LeastLoaded(&set), Owner(owner));
                    let load = |c: u32| model[c as usize].iter().filter(|o| o.is_some()).count();
                    let usable = (first..=last).filter(|&v| !system[v as usize]).count();
                    let best = set
                        .iter()
                        .copied()
                        .filter(|&c| online[c as usize])
                        .min_by_key(|&c| (load(c), c));
                    match best {
                        Some(c) if load(c) < usable => {
                            let (cpu, v) = r.unwrap();
                            assert_eq!(load(cpu), load(c), "placed on a least-loaded CPU");
                            assert_eq!(cpu, c, "the first of the least-loaded");
                            model[cpu as usize][v as usize] = Some(owner);
                        }
                        _ => assert_eq!(r, Err(AllocError::Exhausted)),
                    }
                }
                6..=7 => {
                    let cpu = rng.below(cpus as usize) as u32;
                    let v = first + rng.below((last - first) as usize + 1) as u8;
                    let r = m.release(cpu, v);
                    match model[cpu as usize][v as usize].take() {
                        Some(o) => assert_eq!(r, Ok(Owner(o))),
                        None => assert_eq!(r, Err(AllocError::NotAllocated)),
                    }
                }
                8 => {
                    let v = rng.below(256) as u8;
                    let r = m.reserve_system(v);
                    if system[v as usize] {
                        assert_eq!(r, Err(AllocError::Reserved));
                    } else if model.iter().any(|c| c[v as usize].is_some()) {
                        assert_eq!(r, Err(AllocError::Taken));
                    } else {
                        assert_eq!(r, Ok(()));
                        system[v as usize] = true;
                    }
                }
                _ => {
                    let cpu = rng.below(cpus as usize) as u32;
                    let on = rng.below(3) != 0;
                    m.set_online(cpu, on).unwrap();
                    online[cpu as usize] = on;
                }
            }
            m.check().unwrap_or_else(|e| panic!("round {round} step {step}: {e}"));
            for cpu in 0..cpus {
                for v in 0..=255u8 {
                    assert_eq!(m.owner(cpu, v), model[cpu as usize][v as usize].map(Owner));
                }
            }
            let total: usize = model.iter().map(|c| c.iter().filter(|o| o.is_some()).count()).sum();
            assert_eq!(m.total_allocated(), total as u64);
        }
    }
}

#[test]
fn the_checker_catches_corruption() {
    let mut m = Matrix::new(2, DEVICE).unwrap();
    m.allocate(Placement::Cpu(0), Owner(1)).unwrap();
    let good = m.clone();
    m.cpus[0].count = 2;
    assert!(m.check().is_err());
    let mut m = good.clone();
    m.owners[5] = Some(Owner(9));
    assert!(m.check().is_err());
    let mut m = good.clone();
    set_bit(&mut m.cpus[1].allocated, 0x20, true);
    m.cpus[1].count += 1;
    m.total_allocated += 1;
    assert!(m.check().is_err());
    let mut m = good.clone();
    m.total_allocated = 0;
    assert!(m.check().is_err());
    let mut m = good;
    set_bit(&mut m.system, 0x50, true);
    assert!(m.check().is_err());
}
