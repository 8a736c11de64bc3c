//! The per-CPU device-vector matrix.
//!
//! Every CPU owns the same vector range (`first..=last`), and allocates from it on its own:
//! a vector taken on one CPU is still free on all the others. System vectors (the timer,
//! IPIs, spurious) are reserved on every CPU at once, and never handed out. A source is
//! placed either on the CPU its driver asks for, or on the least-loaded online CPU of a set
//! (most vectors still free; the first such CPU in the set on a tie), which spreads
//! sources evenly and keeps working when one CPU is exhausted and others have room. Within
//! a CPU the lowest free vector is taken. The handler of an interrupt is found by
//! `(cpu, vector)` through [`Matrix::owner`].

use alloc::vec;
use alloc::vec::Vec;
use core::ops::RangeInclusive;

/// The handle of whatever a vector was allocated for (an interrupt object, a queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Owner(pub u32);

/// Why a matrix operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// The matrix was asked for zero CPUs or an empty vector range.
    EmptyMatrix,
    /// The CPU index is not below the matrix's CPU count.
    NoSuchCpu,
    /// The requested CPU is offline: nothing is placed there.
    CpuOffline,
    /// The requested CPU has no free vector left in the range.
    CpuFull,
    /// No online CPU of the set has a free vector (or the set names no online CPU).
    Exhausted,
    /// The vector lies outside the device range (or, for a system reservation, is taken).
    OutOfRange,
    /// The vector is reserved for the system on every CPU.
    Reserved,
    /// The vector is already allocated on that CPU (or, for a system reservation, on some CPU).
    Taken,
    /// The vector is not allocated on that CPU.
    NotAllocated,
}

/// Where [`Matrix::allocate`] places a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement<'a> {
    /// This CPU or nothing: its driver waits there, a queue belongs to it.
    Cpu(u32),
    /// The least-loaded online CPU among these.
    LeastLoaded(&'a [u32]),
    /// The least-loaded online CPU of the machine.
    AnyOnline,
}

/// 256 bits, one per vector number.
type Bitmap = [u64; 4];

fn test_bit(map: &Bitmap, v: u8) -> bool {
    map[v as usize / 64] & (1 << (v % 64)) != 0
}

fn set_bit(map: &mut Bitmap, v: u8, on: bool) {
    let bit = 1u64 << (v % 64);
    if on {
        map[v as usize / 64] |= bit;
    } else {
        map[v as usize / 64] &= !bit;
    }
}

fn count_bits(map: &Bitmap) -> u32 {
    map.iter().map(|w| w.count_ones()).sum()
}

/// One CPU's vector space.
#[derive(Clone, Debug)]
struct CpuSpace {
    /// Vectors allocated on this CPU (always inside the range, never a system vector).
    allocated: Bitmap,
    /// `allocated`'s population, kept so placement does not count bits.
    count: u32,
    online: bool,
}

/// Device vectors of every CPU.
#[derive(Clone, Debug)]
pub struct Matrix {
    first: u8,
    last: u8,
    /// Vectors of the range that are not reserved for the system: what a CPU can hand out.
    usable: Bitmap,
    /// Vectors reserved on every CPU.
    system: Bitmap,
    cpus: Vec<CpuSpace>,
    /// `owners[cpu * range_len + (vector - first)]`.
    owners: Vec<Option<Owner>>,
    total_allocated: u64,
}

impl Matrix {
    /// A matrix of `cpus` CPUs, all online, each with the device vectors `range`.
    pub fn new(cpus: u32, range: RangeInclusive<u8>) -> Result<Matrix, AllocError> {
        let (first, last) = (*range.start(), *range.end());
        if cpus == 0 || first > last {
            return Err(AllocError::EmptyMatrix);
        }
        let mut usable = [0; 4];
        for v in first..=last {
            set_bit(&mut usable, v, true);
        }
        let len = last as usize - first as usize + 1;
        Ok(Matrix {
            first,
            last,
            usable,
            system: [0; 4],
            cpus: vec![CpuSpace { allocated: [0; 4], count: 0, online: true }; cpus as usize],
            owners: vec![None; cpus as usize * len],
            total_allocated: 0,
        })
    }

    /// The device vector range every CPU allocates from.
    pub fn range(&self) -> RangeInclusive<u8> {
        self.first..=self.last
    }

    /// How many CPUs the matrix has.
    pub fn cpu_count(&self) -> u32 {
        self.cpus.len() as u32
    }

    fn range_len(&self) -> usize {
        self.last as usize - self.first as usize + 1
    }

    fn slot(&self, cpu: u32, vector: u8) -> usize {
        cpu as usize * self.range_len() + (vector - self.first) as usize
    }

    fn space(&self, cpu: u32) -> Result<&CpuSpace, AllocError> {
        self.cpus.get(cpu as usize).ok_or(AllocError::NoSuchCpu)
    }

    /// Marks a CPU online or offline. An offline CPU is never chosen and refuses requests;
    /// the vectors it still holds stay allocated until released (their sources are moved
    /// by the caller).
    pub fn set_online(&mut self, cpu: u32, online: bool) -> Result<(), AllocError> {
        self.cpus.get_mut(cpu as usize).ok_or(AllocError::NoSuchCpu)?.online = online;
        Ok(())
    }

    /// Whether a CPU is online (`false` for a CPU that does not exist).
    pub fn is_online(&self, cpu: u32) -> bool {
        self.space(cpu).is_ok_and(|c| c.online)
    }

    /// Reserves `vector` on every CPU for the system. Inside the device range it stops being
    /// handed out; it is refused (`Taken`) while any CPU holds it, and `Reserved` if it is
    /// reserved already.
    pub fn reserve_system(&mut self, vector: u8) -> Result<(), AllocError> {
        if test_bit(&self.system, vector) {
            return Err(AllocError::Reserved);
        }
        if self.cpus.iter().any(|c| test_bit(&c.allocated, vector)) {
            return Err(AllocError::Taken);
        }
        set_bit(&mut self.system, vector, true);
        set_bit(&mut self.usable, vector, false);
        Ok(())
    }

    /// Whether `vector` is reserved for the system on every CPU.
    pub fn is_system(&self, vector: u8) -> bool {
        test_bit(&self.system, vector)
    }

    /// Vectors a CPU can still hand out (`None` for a CPU that does not exist).
    pub fn available_on(&self, cpu: u32) -> Option<u32> {
        let c = self.space(cpu).ok()?;
        Some(count_bits(&self.usable) - c.count)
    }

    /// Vectors allocated on a CPU (`None` for a CPU that does not exist).
    pub fn allocated_on(&self, cpu: u32) -> Option<u32> {
        self.space(cpu).ok().map(|c| c.count)
    }

    /// Vectors allocated on all CPUs together, online or not.
    pub fn total_allocated(&self) -> u64 {
        self.total_allocated
    }

    /// Vectors still free on the online CPUs together.
    pub fn global_available(&self) -> u64 {
        let per_cpu = count_bits(&self.usable) as u64;
        self.cpus.iter().filter(|c| c.online).map(|c| per_cpu - c.count as u64).sum()
    }

    /// The owner of `vector` on `cpu`: who handles that interrupt there.
    pub fn owner(&self, cpu: u32, vector: u8) -> Option<Owner> {
        if (cpu as usize) >= self.cpus.len() || !(self.first..=self.last).contains(&vector) {
            return None;
        }
        self.owners[self.slot(cpu, vector)]
    }

    /// Allocates one vector for `owner` as `placement` says; returns `(cpu, vector)`.
    pub fn allocate(
        &mut self,
        placement: Placement<'_>,
        owner: Owner,
    ) -> Result<(u32, u8), AllocError> {
        let cpu = match placement {
            Placement::Cpu(cpu) => {
                let c = self.space(cpu)?;
                if !c.online {
                    return Err(AllocError::CpuOffline);
                }
                cpu
            }
            Placement::LeastLoaded(set) => self.least_loaded(set.iter().copied())?,
            Placement::AnyOnline => self.least_loaded(0..self.cpu_count())?,
        };
        let vector = self.lowest_free(cpu).ok_or(AllocError::CpuFull)?;
        self.take(cpu, vector, owner);
        Ok((cpu, vector))
    }

    /// Allocates exactly `vector` on `cpu` for `owner` (a fixed assignment).
    pub fn allocate_at(&mut self, cpu: u32, vector: u8, owner: Owner) -> Result<(), AllocError> {
        let c = self.space(cpu)?;
        if !c.online {
            return Err(AllocError::CpuOffline);
        }
        if !(self.first..=self.last).contains(&vector) {
            return Err(AllocError::OutOfRange);
        }
        if test_bit(&self.system, vector) {
            return Err(AllocError::Reserved);
        }
        if test_bit(&c.allocated, vector) {
            return Err(AllocError::Taken);
        }
        self.take(cpu, vector, owner);
        Ok(())
    }

    /// Returns `vector` on `cpu` to the free pool; gives back its owner. Works on an
    /// offline CPU too (that is how its sources are moved away).
    pub fn release(&mut self, cpu: u32, vector: u8) -> Result<Owner, AllocError> {
        self.space(cpu)?;
        if !(self.first..=self.last).contains(&vector) {
            return Err(AllocError::OutOfRange);
        }
        let slot = self.slot(cpu, vector);
        let owner = self.owners[slot].take().ok_or(AllocError::NotAllocated)?;
        let c = &mut self.cpus[cpu as usize];
        set_bit(&mut c.allocated, vector, false);
        c.count -= 1;
        self.total_allocated -= 1;
        Ok(owner)
    }

    fn take(&mut self, cpu: u32, vector: u8, owner: Owner) {
        let slot = self.slot(cpu, vector);
        let c = &mut self.cpus[cpu as usize];
        set_bit(&mut c.allocated, vector, true);
        c.count += 1;
        self.owners[slot] = Some(owner);
        self.total_allocated += 1;
    }

    /// The lowest vector of the range free on `cpu`.
    fn lowest_free(&self, cpu: u32) -> Option<u8> {
        let c = &self.cpus[cpu as usize];
        for (i, (usable, taken)) in self.usable.iter().zip(c.allocated.iter()).enumerate() {
            let free = usable & !taken;
            if free != 0 {
                return Some((i * 64) as u8 + free.trailing_zeros() as u8);
            }
        }
        None
    }

    /// The online CPU of `set` with the most free vectors (the first one on a tie); CPUs
    /// listed twice count once. `Exhausted` when none has room.
    fn least_loaded(&self, set: impl Iterator<Item = u32>) -> Result<u32, AllocError> {
        let mut best: Option<(u32, u32)> = None;
        for cpu in set {
            let c = self.space(cpu)?;
            if !c.online {
                continue;
            }
            if best.is_none_or(|(_, fewest)| c.count < fewest) {
                best = Some((cpu, c.count));
            }
        }
        let per_cpu = count_bits(&self.usable);
        match best {
            Some((cpu, count)) if count < per_cpu => Ok(cpu),
            _ => Err(AllocError::Exhausted),
        }
    }

    /// Checks every invariant of the matrix: allocated vectors inside the range and never a
    /// system vector, owners present exactly for allocated vectors, per-CPU counts equal to
    /// their bitmaps, the total equal to their sum. For tests and debug assertions.
    pub fn check(&self) -> Result<(), &'static str> {
        let mut total = 0u64;
        for (cpu, c) in self.cpus.iter().enumerate() {
            if count_bits(&c.allocated) != c.count {
                return Err("per-CPU count differs from its bitmap");
            }
            for v in 0..=255u8 {
                let allocated = test_bit(&c.allocated, v);
                let in_range = (self.first..=self.last).contains(&v);
                if allocated && !in_range {
                    return Err("a vector outside the range is allocated");
                }
                if allocated && test_bit(&self.system, v) {
                    return Err("a system vector is allocated");
                }
                if in_range && self.owners[self.slot(cpu as u32, v)].is_some() != allocated {
                    return Err("an owner is recorded for a free vector, or missing");
                }
            }
            total += c.count as u64;
        }
        if total != self.total_allocated {
            return Err("the total differs from the per-CPU counts");
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "matrix_tests.rs"]
mod tests;
