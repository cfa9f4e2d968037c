//! Hashing for maps keyed by integers the process itself hands out: object
//! addresses, descriptor numbers.
//!
//! std's maps hash with SipHash, which protects a map against keys chosen to
//! collide (hash flooding) at the price of about 100 instructions a lookup.
//! Addresses and descriptors are chosen by the allocator and the kernel, not
//! by whoever sends us data, so that protection buys nothing here, while a
//! per-task-step lookup (the timeline tracer's) pays the price every time.
//!
//! The hash is a folded multiply: the 128-bit product of the key and an odd
//! constant, high half xor low half. Every bit of the key reaches both ends
//! of the result, which matters because hashbrown picks the bucket from the
//! low bits and the tag from the high ones, while addresses share their low
//! bits (alignment) and descriptors their high ones (small numbers).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map keyed by an address or a descriptor number.
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;
/// A set of addresses or descriptor numbers.
pub type IntSet<K> = HashSet<K, BuildHasherDefault<IntHasher>>;

/// The digits of π's fraction: odd, with bits spread over the whole word.
const MULTIPLIER: u64 = 0x243f_6a88_85a3_08d3;

#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

impl IntHasher {
    #[inline]
    fn mix(&mut self, value: u64) {
        let product = u128::from(self.0 ^ value) * u128::from(MULTIPLIER);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

impl Hasher for IntHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    /// Keys other than integers (not what this hasher is for) still hash
    /// correctly, eight bytes at a time.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.mix(u64::from(value));
    }

    #[inline]
    fn write_i32(&mut self, value: i32) {
        self.mix(value as u32 as u64);
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.mix(value);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.mix(value as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn hash(value: usize) -> u64 {
        BuildHasherDefault::<IntHasher>::default().hash_one(value)
    }

    #[test]
    fn aligned_addresses_spread_over_low_and_high_bits() {
        // 4096 addresses 16 bytes apart, as an allocator hands them out.
        let hashes: Vec<u64> = (0..4096usize)
            .map(|i| hash(0x7f00_0000_0000 + 16 * i))
            .collect();
        let low: HashSet<u64> = hashes.iter().map(|h| h & 0xfff).collect();
        let high: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        // A uniform hash fills about 63 % of 4096 low slots and all 128 tags.
        assert!(low.len() > 2400, "{} distinct low parts", low.len());
        assert_eq!(high.len(), 128);
    }

    #[test]
    fn maps_and_sets_work_as_std_ones() {
        let mut map: IntMap<usize, usize> = IntMap::default();
        for key in (0..10_000).map(|i| i * 64) {
            map.insert(key, key + 1);
        }
        assert!((0..10_000).map(|i| i * 64).all(|key| map[&key] == key + 1));
        let mut set: IntSet<i32> = IntSet::default();
        assert!(set.insert(3) && !set.insert(3) && set.remove(&3) && set.is_empty());
    }
}
