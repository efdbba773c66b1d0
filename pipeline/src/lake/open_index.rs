//! The index a run keeps of a versioned entity's open versions: one entry per object, so at
//! 10M audit events it holds millions (a tenant's assignments, requests and review
//! decisions). Its ids are kept once, end to end in an arena, instead of in an allocation
//! each, and found through a hash table of 4-byte slots into a dense list of entries:
//! about 90 bytes an object (48 for the entry, the id's bytes, 4–9 for its slot) where a
//! `HashMap<Box<str>, _>` took 120–160 (48 more for the id's own allocation, and slots of
//! 48 bytes 7/16 to 7/8 full). A removed object is marked, not moved.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// An open version: kept small, there is one per object.
#[derive(Debug, Clone, Copy)]
pub(super) struct Open {
    /// The version's row hash.
    pub hash: u128,
    /// When it was first observed (UTC micros).
    pub valid_from: i64,
    /// Its snapshot scope, interned.
    pub scope: u32,
    /// Seen by this run.
    pub seen: bool,
    /// Found in the current table (while checking it against this index).
    pub in_current: bool,
}

/// Entries per block of the entry list.
const ENTRIES_PER_BLOCK: u32 = 1 << 16;
/// Bytes per block of the id arena (a longer id gets a block of its own).
const ID_BLOCK_BYTES: usize = 1 << 20;

/// One object's place in the arena and its open version.
#[derive(Debug)]
struct Entry {
    open: Open,
    id_block: u32,
    id_start: u32,
    id_len: u32,
    removed: bool,
}

/// Id → open version, for one versioned entity during a run. Entries and ids are kept in
/// fixed-size blocks, so growing never copies them and never holds the old and the new copy
/// at once (a doubling `Vec` of millions of entries would, at the run's peak).
#[derive(Debug, Default)]
pub(super) struct OpenIndex {
    ids: Vec<String>,
    entries: Vec<Vec<Entry>>,
    count: u32,
    slots: HashTable<u32>,
    // Keyed SipHash: ids come from Graph, and a hostile input must not be able to pick
    // colliding ones.
    hasher: std::hash::RandomState,
    live: usize,
}

/// Where entry `i` is: its block and its place in the block.
fn place(i: u32) -> (usize, usize) {
    (
        (i / ENTRIES_PER_BLOCK) as usize,
        (i % ENTRIES_PER_BLOCK) as usize,
    )
}

fn entry_in(entries: &[Vec<Entry>], i: u32) -> &Entry {
    let (block, at) = place(i);
    &entries[block][at]
}

fn id_in<'a>(ids: &'a [String], e: &Entry) -> &'a str {
    let start = e.id_start as usize;
    &ids[e.id_block as usize][start..start + e.id_len as usize]
}

impl OpenIndex {
    /// Objects with an open version.
    pub fn len(&self) -> usize {
        self.live
    }

    fn find(&self, id: &str) -> Option<u32> {
        self.find_hashed(self.hasher.hash_one(id), id)
    }

    fn find_hashed(&self, hash: u64, id: &str) -> Option<u32> {
        self.slots
            .find(hash, |&i| {
                id_in(&self.ids, entry_in(&self.entries, i)) == id
            })
            .copied()
    }

    fn entry_mut(&mut self, i: u32) -> &mut Entry {
        let (block, at) = place(i);
        &mut self.entries[block][at]
    }

    /// The open version of `id`.
    pub fn get(&self, id: &str) -> Option<&Open> {
        self.find(id)
            .map(|i| entry_in(&self.entries, i))
            .filter(|e| !e.removed)
            .map(|e| &e.open)
    }

    /// The open version of `id`, to change.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Open> {
        let i = self.find(id)?;
        let e = self.entry_mut(i);
        (!e.removed).then_some(&mut e.open)
    }

    /// Sets the open version of `id`; returns the one it replaces.
    pub fn insert(&mut self, id: &str, open: Open) -> Option<Open> {
        let hash = self.hasher.hash_one(id);
        if let Some(i) = self.find_hashed(hash, id) {
            let e = self.entry_mut(i);
            let old = (!e.removed).then_some(e.open);
            let revived = e.removed;
            e.removed = false;
            e.open = open;
            if revived {
                self.live += 1;
            }
            return old;
        }
        let index = self.count;
        self.count = index
            .checked_add(1)
            .expect("fewer than 4 billion objects of one entity in a run");
        let fits = self
            .ids
            .last()
            .is_some_and(|b| b.capacity() - b.len() >= id.len());
        if !fits {
            self.ids
                .push(String::with_capacity(ID_BLOCK_BYTES.max(id.len())));
        }
        let id_block = self.ids.len() - 1;
        let block = &mut self.ids[id_block];
        let entry = Entry {
            open,
            id_block: id_block as u32,
            id_start: block.len() as u32,
            id_len: id.len() as u32,
            removed: false,
        };
        block.push_str(id);
        if index.is_multiple_of(ENTRIES_PER_BLOCK) {
            self.entries
                .push(Vec::with_capacity(ENTRIES_PER_BLOCK as usize));
        }
        self.entries
            .last_mut()
            .expect("the first entry starts a block")
            .push(entry);
        self.live += 1;
        let Self {
            ids,
            entries,
            slots,
            hasher,
            ..
        } = self;
        slots.insert_unique(hash, index, |&i| {
            hasher.hash_one(id_in(ids, entry_in(entries, i)))
        });
        None
    }

    /// Removes the open version of `id`; returns it.
    pub fn remove(&mut self, id: &str) -> Option<Open> {
        let i = self.find(id)?;
        let e = self.entry_mut(i);
        if e.removed {
            return None;
        }
        e.removed = true;
        let open = e.open;
        self.live -= 1;
        Some(open)
    }

    /// Every object with an open version, in the order first offered.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Open)> {
        self.entries
            .iter()
            .flatten()
            .filter(|e| !e.removed)
            .map(|e| (id_in(&self.ids, e), &e.open))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(hash: u128) -> Open {
        Open {
            hash,
            valid_from: 0,
            scope: 0,
            seen: false,
            in_current: false,
        }
    }

    #[test]
    fn ids_are_found_replaced_and_removed_like_a_map() {
        let mut index = OpenIndex::default();
        let mut model = std::collections::HashMap::new();
        // Enough ids for the table to grow (and rehash from the arena) many times and to
        // fill more than one block of entries and of ids (some ids longer than a block),
        // with prefixes shared and an empty id among them.
        for n in 0..200_000u128 {
            let id = format!("{:x}", n % 70_001);
            let id = match n % 20_000 {
                0 => String::new(),
                7 => format!("{id}{}", "x".repeat(ID_BLOCK_BYTES / 3)),
                13 => format!("{id}{}", "y".repeat(ID_BLOCK_BYTES + 5)),
                _ => id,
            };
            let expected = model.insert(id.clone(), n);
            assert_eq!(index.insert(&id, open(n)).map(|o| o.hash), expected);
            if n % 3 == 0 {
                assert_eq!(index.remove(&id).map(|o| o.hash), model.remove(&id));
                assert!(index.remove(&id).is_none());
            }
        }
        assert_eq!(index.len(), model.len());
        assert!(index.entries.len() > 1 && index.ids.len() > 2);
        for (id, hash) in &model {
            assert_eq!(index.get(id).map(|o| o.hash), Some(*hash));
        }
        let listed: std::collections::HashMap<String, u128> = index
            .iter()
            .map(|(id, o)| (id.to_string(), o.hash))
            .collect();
        assert_eq!(listed, model);
        assert!(index.get("not an id").is_none());
        let some_id = model.keys().next().expect("ids remain");
        index.get_mut(some_id).expect("it is open").seen = true;
        assert_eq!(index.iter().filter(|(_, o)| o.seen).count(), 1);
    }
}
