//! `FdTable`: values keyed by descriptor number, found by index.
//!
//! Every readiness report looks a descriptor up, and an index is cheaper than
//! a hash. The kernel hands out the lowest free numbers, so the descriptors of
//! a process are dense and a vector indexed by them stays small: it is sized
//! by the highest descriptor *in the table* and shrinks again when the high
//! ones leave, so a burst of connections does not pin memory for good.
//!
//! Numbers at or above [`DENSE_LIMIT`] go to a hash map instead: a process
//! holding that many files is rare, and a single large number (a `dup2` to
//! 1,000,000, say) must not make the vector that large. Callers insert only
//! descriptors the kernel has accepted, so the table never grows for a
//! number that names no open file.

use std::os::fd::RawFd;

use crate::int_hash::IntMap;

/// Descriptors below this are stored by index; the vector then holds at most
/// this many slots.
pub const DENSE_LIMIT: usize = 1 << 16;

/// The vector grows by a quarter of its size (at least to what it needs):
/// a server that accepted 10,000 connections keeps about 12,000 slots, not
/// the 16,384 that doubling would leave it.
const GROWTH_DIVISOR: usize = 4;
/// Shrink the vector when it has this many times more room than it uses.
const SHRINK_FACTOR: usize = 4;
/// ... but never below this many slots: small tables are not worth it.
const MIN_CAPACITY: usize = 64;

pub struct FdTable<T> {
    dense: Vec<Option<T>>,
    sparse: IntMap<RawFd, T>,
    count: usize,
}

impl<T> Default for FdTable<T> {
    fn default() -> Self {
        FdTable {
            dense: Vec::new(),
            sparse: IntMap::default(),
            count: 0,
        }
    }
}

/// The index of `fd` in the vector, if it is stored there.
fn dense_index(fd: RawFd) -> Option<usize> {
    usize::try_from(fd).ok().filter(|&i| i < DENSE_LIMIT)
}

impl<T> FdTable<T> {
    pub fn get(&self, fd: RawFd) -> Option<&T> {
        match dense_index(fd) {
            Some(i) => self.dense.get(i)?.as_ref(),
            None => self.sparse.get(&fd),
        }
    }

    pub fn get_mut(&mut self, fd: RawFd) -> Option<&mut T> {
        match dense_index(fd) {
            Some(i) => self.dense.get_mut(i)?.as_mut(),
            None => self.sparse.get_mut(&fd),
        }
    }

    /// The value of `fd`, made with `make` if absent. `fd` must not be
    /// negative (callers check).
    pub fn get_or_insert_with(&mut self, fd: RawFd, make: impl FnOnce() -> T) -> &mut T {
        debug_assert!(fd >= 0);
        match dense_index(fd) {
            Some(i) => {
                if i >= self.dense.len() {
                    let capacity = self.dense.capacity();
                    if i >= capacity {
                        // At most DENSE_LIMIT slots: a bounded allocation.
                        let grown = (capacity + capacity / GROWTH_DIVISOR)
                            .max(i + 1)
                            .clamp(MIN_CAPACITY, DENSE_LIMIT);
                        self.dense.reserve_exact(grown - self.dense.len());
                    }
                    self.dense.resize_with(i + 1, || None);
                }
                let slot = &mut self.dense[i];
                if slot.is_none() {
                    self.count += 1;
                }
                slot.get_or_insert_with(make)
            }
            None => {
                let count = &mut self.count;
                self.sparse.entry(fd).or_insert_with(|| {
                    *count += 1;
                    make()
                })
            }
        }
    }

    pub fn remove(&mut self, fd: RawFd) -> Option<T> {
        let removed = match dense_index(fd) {
            Some(i) => {
                let removed = self.dense.get_mut(i)?.take();
                if removed.is_some() && i + 1 == self.dense.len() {
                    self.trim();
                }
                removed
            }
            None => self.sparse.remove(&fd),
        };
        if removed.is_some() {
            self.count -= 1;
        }
        removed
    }

    /// Drops the empty slots at the end, and gives memory back once most of
    /// the vector's room is unused.
    fn trim(&mut self) {
        while matches!(self.dense.last(), Some(None)) {
            self.dense.pop();
        }
        let used = self.dense.len();
        if self.dense.capacity() > MIN_CAPACITY && self.dense.capacity() > SHRINK_FACTOR * used {
            self.dense.shrink_to((2 * used).max(MIN_CAPACITY));
        }
        if self.sparse.is_empty() && self.sparse.capacity() > 0 {
            self.sparse.shrink_to_fit();
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes every entry and returns them; the table keeps no memory.
    pub fn drain(&mut self) -> Vec<(RawFd, T)> {
        let mut out: Vec<(RawFd, T)> = std::mem::take(&mut self.dense)
            .into_iter()
            .enumerate()
            .filter_map(|(fd, slot)| slot.map(|v| (fd as RawFd, v)))
            .collect();
        out.extend(std::mem::take(&mut self.sparse));
        self.count = 0;
        out
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.dense.iter().flatten().chain(self.sparse.values())
    }

    /// Every entry with its descriptor.
    pub fn iter(&self) -> impl Iterator<Item = (RawFd, &T)> {
        let dense = self
            .dense
            .iter()
            .enumerate()
            .filter_map(|(fd, slot)| Some((fd as RawFd, slot.as_ref()?)));
        dense.chain(self.sparse.iter().map(|(&fd, v)| (fd, v)))
    }

    /// Slots the vector holds (for tests and memory accounting).
    pub fn dense_capacity(&self) -> usize {
        self.dense.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_numbers_do_not_grow_the_vector() {
        let mut table = FdTable::default();
        *table.get_or_insert_with(i32::MAX, || 0) = 7;
        *table.get_or_insert_with(DENSE_LIMIT as RawFd, || 0) = 8;
        assert_eq!(table.dense_capacity(), 0);
        assert_eq!(table.get(i32::MAX), Some(&7));
        assert_eq!(table.get(DENSE_LIMIT as RawFd), Some(&8));
        assert_eq!(table.len(), 2);
        assert_eq!(table.remove(i32::MAX), Some(7));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn the_vector_shrinks_when_high_descriptors_leave() {
        let mut table = FdTable::default();
        for fd in 0..10_000 {
            table.get_or_insert_with(fd, || fd);
        }
        assert!(table.dense_capacity() >= 10_000);
        for fd in (10..10_000).rev() {
            assert_eq!(table.remove(fd), Some(fd));
        }
        assert!(table.dense_capacity() <= MIN_CAPACITY);
        assert_eq!(table.len(), 10);
        assert_eq!(table.values().copied().sum::<i32>(), 45);
    }

    #[test]
    fn the_vector_grows_by_a_quarter() {
        let mut table = FdTable::default();
        for fd in 0..10_000 {
            table.get_or_insert_with(fd, || fd);
        }
        let capacity = table.dense_capacity();
        assert!((10_000..=12_500).contains(&capacity), "{capacity} slots");
        for fd in 0..10_000 {
            assert_eq!(table.get(fd), Some(&fd));
        }
    }

    #[test]
    fn a_hole_below_the_top_keeps_the_vector() {
        let mut table = FdTable::default();
        for fd in 0..100 {
            table.get_or_insert_with(fd, || fd);
        }
        table.remove(50);
        assert_eq!(table.get(50), None);
        assert_eq!(table.get(99), Some(&99));
        assert_eq!(table.len(), 99);
    }

    #[test]
    fn drain_empties_both_parts() {
        let mut table = FdTable::default();
        table.get_or_insert_with(3, || 'a');
        table.get_or_insert_with(1 << 20, || 'b');
        let mut drained = table.drain();
        drained.sort();
        assert_eq!(drained, vec![(3, 'a'), (1 << 20, 'b')]);
        assert!(table.is_empty());
        assert_eq!(table.dense_capacity(), 0);
    }
}
