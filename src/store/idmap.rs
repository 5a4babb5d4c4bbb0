//! A compact map from message ids to small fixed-size values: what the journal's index and recovery keep per
//! live message, for backlogs of tens of millions of messages.
//!
//! Message ids come from one counter in publish order, so the live ones form mostly dense runs. The map splits
//! the id space into pages of [`PAGE`] consecutive ids. A page where many ids are live is *dense*: a boxed array
//! of values plus a presence bitmap, `size_of::<V>()` bytes per id (and 1 bit). A page where few are is
//! *sparse*: sorted parallel deques of 16-bit offsets and values, `size_of::<V>() + 2` bytes per live id, so a
//! few old messages stuck among millions of consumed ones never keep a whole dense page alive. Pages switch
//! form with hysteresis (dense above [`TO_DENSE`] entries, sparse below [`TO_SPARSE`]), which bounds a dense
//! page at 8 × (`size_of::<V>()` + 1/8) bytes per live id, and are freed when empty. Ids mostly arrive in
//! increasing order and leave in the same order, so a sparse page mostly appends at its back and pops at its
//! front, both O(1) on a deque; a removal elsewhere moves at most half of its (at most [`TO_DENSE`]) entries.

use std::cell::Cell;
use std::collections::VecDeque;

/// Ids per page (a power of two).
const PAGE_BITS: u32 = 12;
const PAGE: usize = 1 << PAGE_BITS;
const WORDS: usize = PAGE / 64;
/// A sparse page with more entries than this becomes dense.
const TO_DENSE: usize = PAGE / 4;
/// A dense page with fewer entries than this becomes sparse.
const TO_SPARSE: usize = PAGE / 8;

/// See the module docs. The pages sit in a deque sorted by page number (new pages mostly go at the back, and
/// emptied ones mostly leave from the front), found by binary search after a check of the page used last: ids
/// mostly arrive in order, so most look-ups hit that page or the one after it (recovery inserts tens of
/// millions of ids in a row; a tree walk per id was a third of its time).
#[derive(Debug, Clone)]
pub(crate) struct IdMap<V> {
    pages: VecDeque<(u64, Page<V>)>,
    /// Where the page used last sits in `pages` (a hint: checked before use).
    hint: Cell<usize>,
    len: usize,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        Self {
            pages: VecDeque::new(),
            hint: Cell::new(0),
            len: 0,
        }
    }
}

#[derive(Debug, Clone)]
enum Page<V> {
    Dense {
        values: Box<[V]>,
        present: Box<[u64; WORDS]>,
        count: usize,
    },
    Sparse {
        keys: VecDeque<u16>,
        values: VecDeque<V>,
    },
}

fn split(id: u64) -> (u64, usize) {
    (id >> PAGE_BITS, (id & (PAGE as u64 - 1)) as usize)
}

fn bit(slot: usize) -> (usize, u64) {
    (slot / 64, 1u64 << (slot % 64))
}

/// The slots whose bit is set, in order, a word at a time (a full page of 4096 slots is walked in 64 steps of
/// the bitmap, not 4096 tests).
fn slots(present: &[u64; WORDS]) -> impl Iterator<Item = usize> + '_ {
    present
        .iter()
        .enumerate()
        .flat_map(|(w, word)| word_slots(w, *word))
}

/// The slots of bitmap word `w` whose bit is set in `word`.
fn word_slots(w: usize, mut word: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let low = word.trailing_zeros() as usize;
        (word != 0).then(|| {
            word &= word - 1;
            w * 64 + low
        })
    })
}

impl<V: Copy + Default> Page<V> {
    fn len(&self) -> usize {
        match self {
            Page::Dense { count, .. } => *count,
            Page::Sparse { keys, .. } => keys.len(),
        }
    }

    fn get(&self, slot: usize) -> Option<&V> {
        match self {
            Page::Dense {
                values, present, ..
            } => {
                let (w, b) = bit(slot);
                (present[w] & b != 0).then(|| &values[slot])
            }
            Page::Sparse { keys, values } => {
                let at = keys.binary_search(&(slot as u16)).ok()?;
                values.get(at)
            }
        }
    }

    fn get_mut(&mut self, slot: usize) -> Option<&mut V> {
        match self {
            Page::Dense {
                values, present, ..
            } => {
                let (w, b) = bit(slot);
                (present[w] & b != 0).then(|| &mut values[slot])
            }
            Page::Sparse { keys, values } => {
                let at = keys.binary_search(&(slot as u16)).ok()?;
                values.get_mut(at)
            }
        }
    }

    fn insert(&mut self, slot: usize, value: V) -> Option<V> {
        match self {
            Page::Dense {
                values,
                present,
                count,
            } => {
                let (w, b) = bit(slot);
                let old = std::mem::replace(&mut values[slot], value);
                if present[w] & b != 0 {
                    return Some(old);
                }
                present[w] |= b;
                *count += 1;
                None
            }
            Page::Sparse { keys, values } => {
                // Ids arrive mostly in increasing order: appending is the common case.
                let key = slot as u16;
                if keys.back().is_none_or(|k| *k < key) {
                    keys.push_back(key);
                    values.push_back(value);
                    return None;
                }
                match keys.binary_search(&key) {
                    Ok(at) => Some(std::mem::replace(&mut values[at], value)),
                    Err(at) => {
                        keys.insert(at, key);
                        values.insert(at, value);
                        None
                    }
                }
            }
        }
    }

    fn remove(&mut self, slot: usize) -> Option<V> {
        match self {
            Page::Dense {
                values,
                present,
                count,
            } => {
                let (w, b) = bit(slot);
                if present[w] & b == 0 {
                    return None;
                }
                present[w] &= !b;
                *count -= 1;
                Some(std::mem::take(&mut values[slot]))
            }
            Page::Sparse { keys, values } => {
                let at = keys.binary_search(&(slot as u16)).ok()?;
                keys.remove(at);
                let old = values.remove(at)?;
                if keys.capacity() > 16 && keys.len() * 4 < keys.capacity() {
                    keys.shrink_to(keys.len() * 2);
                    values.shrink_to(values.len() * 2);
                }
                Some(old)
            }
        }
    }

    /// Switches form when the entry count crossed a threshold.
    fn rebalance(&mut self) {
        match self {
            Page::Sparse { keys, values } if keys.len() > TO_DENSE => {
                let mut dense = vec![V::default(); PAGE].into_boxed_slice();
                let mut present = Box::new([0u64; WORDS]);
                for (k, v) in keys.iter().zip(values.iter()) {
                    let (w, b) = bit(usize::from(*k));
                    dense[usize::from(*k)] = *v;
                    present[w] |= b;
                }
                *self = Page::Dense {
                    values: dense,
                    present,
                    count: keys.len(),
                };
            }
            Page::Dense { count, .. } if *count < TO_SPARSE => {
                let mut keys = VecDeque::with_capacity(*count);
                let mut sparse = VecDeque::with_capacity(*count);
                for (slot, v) in self.iter() {
                    keys.push_back(slot as u16);
                    sparse.push_back(*v);
                }
                *self = Page::Sparse {
                    keys,
                    values: sparse,
                };
            }
            _ => {}
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (usize, &V)> + '_> {
        match self {
            Page::Dense {
                values, present, ..
            } => Box::new(slots(present).map(move |slot| (slot, &values[slot]))),
            Page::Sparse { keys, values } => {
                Box::new(keys.iter().map(|k| usize::from(*k)).zip(values.iter()))
            }
        }
    }

    /// The entries, in slot order, taking the page.
    fn into_entries(self) -> Box<dyn Iterator<Item = (usize, V)>>
    where
        V: 'static,
    {
        match self {
            Page::Dense {
                values, present, ..
            } => Box::new(
                (0..WORDS)
                    .flat_map(move |w| word_slots(w, present[w]))
                    .map(move |slot| (slot, values[slot])),
            ),
            Page::Sparse { keys, values } => {
                Box::new(keys.into_iter().map(usize::from).zip(values))
            }
        }
    }

    fn iter_mut(&mut self) -> Box<dyn Iterator<Item = (usize, &mut V)> + '_> {
        match self {
            Page::Dense {
                values, present, ..
            } => {
                let present = &**present;
                Box::new(values.iter_mut().enumerate().filter(move |(slot, _)| {
                    let (w, b) = bit(*slot);
                    present[w] & b != 0
                }))
            }
            Page::Sparse { keys, values } => {
                Box::new(keys.iter().map(|k| usize::from(*k)).zip(values.iter_mut()))
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Page::Dense { .. } => PAGE * size_of::<V>() + WORDS * 8,
            Page::Sparse { keys, values } => {
                keys.capacity() * 2 + values.capacity() * size_of::<V>()
            }
        }
    }
}

impl<V: Copy + Default> IdMap<V> {
    /// Number of ids in the map.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Where page `number` sits in `pages` (`Ok`), or where it would go (`Err`).
    fn find(&self, number: u64) -> Result<usize, usize> {
        let hint = self.hint.get();
        // The page used last, the one after it (ids in order), the newest (a publish while settles use another).
        for at in [hint, hint + 1, self.pages.len().wrapping_sub(1)] {
            if self.pages.get(at).is_some_and(|(n, _)| *n == number) {
                self.hint.set(at);
                return Ok(at);
            }
        }
        let found = self.pages.binary_search_by_key(&number, |(n, _)| *n);
        if let Ok(at) = found {
            self.hint.set(at);
        }
        found
    }

    pub(crate) fn get(&self, id: u64) -> Option<&V> {
        let (page, slot) = split(id);
        let at = self.find(page).ok()?;
        self.pages[at].1.get(slot)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        let (page, slot) = split(id);
        let at = self.find(page).ok()?;
        self.pages[at].1.get_mut(slot)
    }

    /// Inserts or replaces; returns the value it replaced.
    pub(crate) fn insert(&mut self, id: u64, value: V) -> Option<V> {
        let (number, slot) = split(id);
        let at = self.find(number).unwrap_or_else(|at| {
            let empty = Page::Sparse {
                keys: VecDeque::new(),
                values: VecDeque::new(),
            };
            self.pages.insert(at, (number, empty));
            self.hint.set(at);
            at
        });
        let page = &mut self.pages[at].1;
        let old = page.insert(slot, value);
        if old.is_none() {
            self.len += 1;
            page.rebalance();
        }
        old
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<V> {
        let (number, slot) = split(id);
        let at = self.find(number).ok()?;
        let page = &mut self.pages[at].1;
        let old = page.remove(slot)?;
        self.len -= 1;
        if page.len() == 0 {
            self.pages.remove(at);
        } else {
            page.rebalance();
        }
        Some(old)
    }

    /// Entries in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &V)> + '_ {
        self.pages.iter().flat_map(|(number, page)| {
            page.iter()
                .map(move |(slot, v)| ((number << PAGE_BITS) | slot as u64, v))
        })
    }

    /// Entries in id order, mutably.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut V)> + '_ {
        self.pages.iter_mut().flat_map(|(number, page)| {
            let number = *number;
            page.iter_mut()
                .map(move |(slot, v)| ((number << PAGE_BITS) | slot as u64, v))
        })
    }

    /// Takes every entry out in id order, freeing each page as soon as it has been read.
    pub(crate) fn drain(self) -> impl Iterator<Item = (u64, V)>
    where
        V: 'static,
    {
        self.pages.into_iter().flat_map(|(number, page)| {
            page.into_entries()
                .map(move |(slot, v)| ((number << PAGE_BITS) | slot as u64, v))
        })
    }

    /// Bytes held by the pages (the map's own bookkeeping, a few dozen bytes per page, not counted).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.pages.iter().map(|(_, page)| page.heap_bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn dense_ids_cost_their_value_size() {
        let mut m: IdMap<[u32; 4]> = IdMap::default();
        for id in 0..1_000_000u64 {
            m.insert(id, [id as u32; 4]);
        }
        assert_eq!(m.len(), 1_000_000);
        let per = m.heap_bytes() as f64 / 1e6;
        assert!(per < 16.3, "{per} bytes per id");
        assert_eq!(m.get(123_456), Some(&[123_456; 4]));
    }

    #[test]
    fn one_survivor_per_page_does_not_keep_the_dense_page() {
        let mut m: IdMap<[u32; 4]> = IdMap::default();
        let n = 64 * PAGE as u64;
        for id in 0..n {
            m.insert(id, [1; 4]);
        }
        for id in 0..n {
            if id % PAGE as u64 != 7 {
                m.remove(id);
            }
        }
        assert_eq!(m.len(), 64);
        // A sparse page keeps room for up to 16 entries: 16 * (2 + 16) bytes.
        assert!(
            m.heap_bytes() <= 64 * 16 * 18,
            "{} bytes for 64 ids",
            m.heap_bytes()
        );
        let ids: Vec<u64> = m.iter().map(|(id, _)| id).collect();
        assert_eq!(
            ids,
            (0..64).map(|p| p * PAGE as u64 + 7).collect::<Vec<_>>()
        );
        for id in ids {
            m.remove(id);
        }
        assert_eq!(m.heap_bytes(), 0);
        assert!(m.pages.is_empty());
    }

    #[test]
    fn one_queue_stuck_in_sixteen_costs_little_more_than_its_entries() {
        // Ids of 16 interleaved queues, 15 of them consumed: the survivors sit 1 in 16 in every page.
        let mut m: IdMap<[u32; 4]> = IdMap::default();
        let n = 16 * PAGE as u64;
        for id in 0..n {
            m.insert(id, [1; 4]);
        }
        for id in (0..n).filter(|id| id % 16 != 3) {
            m.remove(id);
        }
        assert_eq!(m.len(), (n / 16) as usize);
        let per = m.heap_bytes() as f64 / m.len() as f64;
        assert!(per <= 40.0, "{per} bytes per surviving id");
    }

    proptest! {
        #[test]
        fn behaves_like_a_btreemap(ops in prop::collection::vec((0u8..4, 0u64..20_000, any::<u32>()), 1..3000)) {
            let mut m: IdMap<u32> = IdMap::default();
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            for (op, id, v) in ops {
                // Cluster ids so pages fill up enough to go dense and back.
                let id = if op % 2 == 0 { id % 1200 } else { id };
                match op {
                    0 | 1 => prop_assert_eq!(m.insert(id, v), model.insert(id, v)),
                    2 => prop_assert_eq!(m.remove(id), model.remove(&id)),
                    _ => {
                        if let Some(x) = m.get_mut(id) {
                            *x = v;
                        }
                        if let Some(x) = model.get_mut(&id) {
                            *x = v;
                        }
                    }
                }
                prop_assert_eq!(m.get(id), model.get(&id));
            }
            prop_assert_eq!(m.len(), model.len());
            let ours: Vec<(u64, u32)> = m.iter().map(|(k, v)| (k, *v)).collect();
            let theirs: Vec<(u64, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(m.drain().collect::<Vec<_>>(), theirs);
        }
    }
}
