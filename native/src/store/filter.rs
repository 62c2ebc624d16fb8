//! Which keys the store's runs may hold: a Bloom filter, so that a lookup of a key no run
//! holds (every key of a new peer's sync) reads no run.
//!
//! The filter grows by segments, each twice the capacity of the one before, so that it
//! needs no size up front and stays at [`BITS_PER_KEY`] bits per key; a lookup probes one
//! 64-byte block of each segment (a few segments for millions of keys). About one lookup in
//! a thousand of a key not held answers "maybe" all the same for each full segment, which
//! then reads the runs (each a B-tree descent, so a lookup the filter lets through costs
//! as many descents as there are runs).

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

/// Bits per key: with [`PROBES`] probes in one 512-bit block, about 0.1% false positives
/// per full segment (12 bits gave 0.4%: 2% over the six segments of 10,000,000 keys).
const BITS_PER_KEY: usize = 16;
/// Bits set and tested per key, each chosen by 9 bits of the key's second hash.
const PROBES: u32 = 7;
/// Keys the first segment holds.
const FIRST_CAPACITY: usize = 1 << 18;

/// One block: a cache line.
type Block = [u64; 8];

/// A Bloom filter of byte strings that grows as keys are inserted.
#[derive(Default)]
pub(super) struct KeyFilter {
    segments: Vec<Segment>,
}

struct Segment {
    blocks: Box<[Block]>,
    capacity: usize,
    len: usize,
}

impl Segment {
    fn with_capacity(capacity: usize) -> Self {
        let blocks = (capacity * BITS_PER_KEY).div_ceil(512);
        Self {
            blocks: vec![[0; 8]; blocks].into_boxed_slice(),
            capacity,
            len: 0,
        }
    }

    /// The block of `hash` and, for each probe, the word in it and the bit to test.
    fn probes(&self, hash: u64) -> (usize, impl Iterator<Item = (usize, u64)>) {
        let block = ((u128::from(hash) * self.blocks.len() as u128) >> 64) as usize;
        let bits = hash.rotate_left(32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let probes = (0..PROBES).map(move |i| {
            let bit = (bits >> (9 * i)) & 511;
            ((bit >> 6) as usize, 1u64 << (bit & 63))
        });
        (block, probes)
    }
}

impl KeyFilter {
    /// Records `key`.
    pub(super) fn insert(&mut self, key: &[u8]) {
        let full = self.segments.last().is_none_or(|s| s.len >= s.capacity);
        if full {
            let capacity = self
                .segments
                .last()
                .map_or(FIRST_CAPACITY, |s| s.capacity * 2);
            self.segments.push(Segment::with_capacity(capacity));
        }
        let hash = hash(key);
        let segment = self.segments.last_mut().expect("pushed above");
        let (block, probes) = segment.probes(hash);
        let block = &mut segment.blocks[block];
        for (word, bit) in probes {
            block[word] |= bit;
        }
        segment.len += 1;
    }

    /// False if `key` was never inserted; true if it was, and for about 0.1% of other keys
    /// per full segment.
    pub(super) fn may_contain(&self, key: &[u8]) -> bool {
        let hash = hash(key);
        self.segments.iter().any(|segment| {
            let (block, mut probes) = segment.probes(hash);
            let block = &segment.blocks[block];
            probes.all(|(word, bit)| block[word] & bit != 0)
        })
    }

    /// Forgets every key and gives back the memory.
    pub(super) fn clear(&mut self) {
        self.segments = Vec::new();
    }

    /// Bytes the filter holds.
    pub(super) fn bytes(&self) -> usize {
        self.segments
            .iter()
            .map(|s| std::mem::size_of_val(&*s.blocks))
            .sum()
    }
}

fn hash(key: &[u8]) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_every_key_inserted_and_few_others() {
        let mut filter = KeyFilter::default();
        let inserted = 3 * FIRST_CAPACITY;
        for i in 0..inserted {
            filter.insert(format!("/key/{i}").as_bytes());
        }
        assert_eq!(
            filter.segments.len(),
            2,
            "grown by a segment twice as large"
        );
        assert!((0..inserted).all(|i| filter.may_contain(format!("/key/{i}").as_bytes())));
        let others = 100_000;
        let false_positives = (0..others)
            .filter(|i| filter.may_contain(format!("/other/{i}").as_bytes()))
            .count();
        // Two full segments, each about 0.1%.
        assert!(false_positives < others * 4 / 1000, "{false_positives}");
        assert!(filter.bytes() <= inserted * BITS_PER_KEY / 8 + 1024);
        filter.clear();
        assert!(!filter.may_contain(b"/key/0"));
    }
}
