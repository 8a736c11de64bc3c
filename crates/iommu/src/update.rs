//! Changing one interrupt-remapping table entry while the units run (VT-d spec 6.5.2.7,
//! 6.5.2.8, 6.1): the entry is stored, its cache line written back when a unit does not
//! snoop (ECAP.C = 0), and only then is every unit's cached copy invalidated, each
//! invalidation followed by a wait whose status write proves the unit has dropped the old
//! copy. Generic over the table memory and the queues so host tests record the order
//! (`update_tests.rs`); the kernel supplies `clflush` and its invalidation queues.

use crate::queue;

/// The table memory and the units' invalidation queues, as the update sequence uses them.
pub trait EntryUpdate {
    /// Why a queue did not complete.
    type Error;
    /// Stores entry `index`: the upper half (source validation) first, then the lower half
    /// with P, so that the entry is never present with a stale source check.
    fn store(&mut self, index: u16, raw: [u64; 2]);
    /// Writes back the cache line holding entry `index` (`clflush`, then a fence) so that a
    /// unit reading memory without snooping sees the new entry.
    fn flush(&mut self, index: u16);
    /// Units that may cache the entry.
    fn units(&self) -> usize;
    /// Places `descriptor` at the tail of `unit`'s queue (not yet visible to the unit).
    fn enqueue(&mut self, unit: usize, descriptor: [u64; 2]);
    /// Places an invalidation wait with a fresh status token at the tail of `unit`'s queue.
    fn enqueue_wait(&mut self, unit: usize);
    /// Moves `unit`'s tail past what was enqueued and polls until the last wait's status
    /// write arrived (every earlier descriptor done), or fails.
    fn complete(&mut self, unit: usize) -> Result<(), Self::Error>;
}

/// Writes entry `index` and invalidates it in every unit: store, `flush` when the units are
/// not coherent, then per unit an interrupt-entry-cache invalidation of that index (G = 1,
/// IM = 0), a wait, and completion. A unit that fails stops the sequence.
pub fn write_entry<T: EntryUpdate>(
    target: &mut T,
    index: u16,
    raw: [u64; 2],
    coherent: bool,
) -> Result<(), T::Error> {
    target.store(index, raw);
    if !coherent {
        target.flush(index);
    }
    for unit in 0..target.units() {
        target.enqueue(unit, queue::iec(Some((index, 0))));
        target.enqueue_wait(unit);
        target.complete(unit)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
