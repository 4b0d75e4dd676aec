//! [`ShardedMap`]: a hash map split into [`SHARDS`] maps, so that growing it never moves more
//! than a small part of it at once.
//!
//! A `HashMap` grows by moving every entry into a table twice the size, in one go. The memory
//! store's job map holds millions of records (a week of submits by default) and is used under
//! a lock on the request path: at 1-3 million jobs one such move took 70-280 ms, every request
//! of the worker waiting behind it (S2 in bench/README.md, item 23). Split 64 ways, each part
//! grows on its own, one 64th of the entries at a time, and the peak of memory a move needs
//! (old and new table side by side) is a 64th as well.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use crate::hash::{FastMap, FastState};

/// How many parts a [`ShardedMap`] has.
pub const SHARDS: usize = 64;

/// A map split into [`SHARDS`] parts by the hash of the key.
pub struct ShardedMap<K, V> {
    shards: Box<[FastMap<K, V>]>,
    /// Picks the part. Seeded apart from the parts' own hashers: with one hash for both, the
    /// keys of one part would share the high bits `hashbrown` tells entries apart by.
    pick: FastState,
}

impl<K: Hash + Eq, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| FastMap::default()).collect(),
            pick: FastState::default(),
        }
    }
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    fn shard_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        // The high bits of foldhash are its best mixed.
        (self.pick.hash_one(key) >> (u64::BITS - SHARDS.trailing_zeros())) as usize
    }

    /// The value of `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards[self.shard_of(key)].get(key)
    }

    /// The value of `key`, to change.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard_of(key);
        self.shards[shard].get_mut(key)
    }

    /// Sets `key` to `value`, giving back the value it had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let shard = self.shard_of(&key);
        self.shards[shard].insert(key, value)
    }

    /// Keeps the entries of part `shard` (below [`SHARDS`]) that `keep` says to; gives how many
    /// it removed. Part by part, a caller can let go of its lock between parts.
    pub fn retain_shard(
        &mut self,
        shard: usize,
        mut keep: impl FnMut(&K, &mut V) -> bool,
    ) -> usize {
        let Some(map) = self.shards.get_mut(shard) else {
            return 0;
        };
        let before = map.len();
        map.retain(|k, v| keep(k, v));
        before - map.len()
    }

    /// How many entries each part holds.
    #[cfg(test)]
    pub fn shard_lens(&self) -> Vec<usize> {
        self.shards.iter().map(FastMap::len).collect()
    }

    /// How many entries all parts hold.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(FastMap::len).sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn request_ids_spread_over_every_part() {
        let mut map = ShardedMap::<Box<str>, u32>::default();
        for i in 0..64_000u32 {
            map.insert(format!("{:032x}", u128::from(i) * 0x9e37_79b9).into(), i);
        }
        let lens = map.shard_lens();
        assert_eq!(lens.len(), SHARDS);
        // 1,000 expected per part; a fair spread stays well within 20% of that.
        assert!(lens.iter().all(|&n| (800..1200).contains(&n)), "{lens:?}");
        assert_eq!(map.len(), 64_000);
    }

    proptest! {
        /// Whatever is done to it, it holds what one plain map would.
        #[test]
        fn behaves_as_one_map(ops in proptest::collection::vec((0u8..4, 0u16..300, any::<u32>()), 0..400)) {
            let mut map = ShardedMap::<String, u32>::default();
            let mut model = HashMap::<String, u32>::new();
            for (op, key, value) in ops {
                let key = format!("r{key}");
                match op {
                    0 => prop_assert_eq!(map.insert(key.clone(), value), model.insert(key, value)),
                    1 => prop_assert_eq!(map.get(key.as_str()), model.get(&key)),
                    2 => {
                        if let Some(v) = map.get_mut(key.as_str()) {
                            *v = value;
                        }
                        if let Some(v) = model.get_mut(&key) {
                            *v = value;
                        }
                    }
                    _ => {
                        let cut = value % 1000;
                        let removed: usize = (0..SHARDS)
                            .map(|s| map.retain_shard(s, |_, v| *v % 1000 >= cut))
                            .sum();
                        let before = model.len();
                        model.retain(|_, v| *v % 1000 >= cut);
                        prop_assert_eq!(removed, before - model.len());
                    }
                }
                prop_assert_eq!(map.len(), model.len());
            }
            for (key, value) in &model {
                prop_assert_eq!(map.get(key.as_str()), Some(value));
            }
        }
    }

    #[test]
    fn a_part_out_of_range_removes_nothing() {
        let mut map = ShardedMap::<String, u32>::default();
        map.insert("a".into(), 1);
        assert_eq!(map.retain_shard(SHARDS, |_, _| false), 0);
        assert_eq!(map.len(), 1);
    }
}
