//! A bounded memo of a pure function of a string, for the per-thread caches of the
//! core (issue 17): the answer for a key is the function's, so a memo can never be
//! stale, and dropping it whole when full changes nothing but time.

use foldhash::HashMap;

/// Answers by key, at most `max_bytes` of keys held, no key longer than `max_key`
/// (those are worked out every time). Keys come from mail: the table is seeded per
/// process (foldhash), so that no mail can write keys that collide.
pub(crate) struct Memo<V> {
    map: HashMap<Box<str>, V>,
    bytes: usize,
    max_bytes: usize,
    max_key: usize,
}

impl<V: Clone> Memo<V> {
    pub(crate) fn new(max_bytes: usize, max_key: usize) -> Self {
        Memo {
            map: HashMap::default(),
            bytes: 0,
            max_bytes,
            max_key,
        }
    }

    /// `f(key)`, remembered.
    pub(crate) fn get(&mut self, key: &str, f: impl FnOnce(&str) -> V) -> V {
        if key.len() > self.max_key {
            return f(key);
        }
        if let Some(v) = self.map.get(key) {
            return v.clone();
        }
        let v = f(key);
        if self.bytes + key.len() > self.max_bytes {
            self.map.clear();
            self.bytes = 0;
        }
        self.bytes += key.len();
        self.map.insert(key.into(), v.clone());
        v
    }
}

/// A [`Memo`] for each of up to `max_sets` rule sets, named by the id a set gets when
/// built (a clone shares it with its identical original): one thread meets a few sets
/// at most (the shipped rules, a reload), and a set's answers are its own.
pub(crate) struct SetMemos<V> {
    sets: Vec<(u64, Memo<V>)>,
    max_sets: usize,
    max_bytes: usize,
    max_key: usize,
}

impl<V: Clone> SetMemos<V> {
    pub(crate) const fn new(max_sets: usize, max_bytes: usize, max_key: usize) -> Self {
        SetMemos {
            sets: Vec::new(),
            max_sets,
            max_bytes,
            max_key,
        }
    }

    /// `f(key)` for the set `id`, remembered; when a new set would make more than
    /// `max_sets`, the set met first is dropped (after a reload, the old rules).
    pub(crate) fn get(&mut self, id: u64, key: &str, f: impl FnOnce(&str) -> V) -> V {
        let slot = match self.sets.iter().position(|(i, _)| *i == id) {
            Some(i) => i,
            None => {
                if self.sets.len() == self.max_sets {
                    self.sets.remove(0);
                }
                let memo = Memo::new(self.max_bytes, self.max_key);
                self.sets.push((id, memo));
                self.sets.len() - 1
            }
        };
        self.sets[slot].1.get(key, f)
    }
}
