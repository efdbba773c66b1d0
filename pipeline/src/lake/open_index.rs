//! The index a run keeps of a versioned entity's open versions: one entry per object, so at
//! 10M audit events it holds millions (4.3M review decisions, 2.7M requests and 2.3M
//! assignments: the largest thing an ingest holds). Each entry is 40 bytes in fixed-size
//! blocks, found through a hash table of 4-byte slots. An id in Graph's canonical form (a
//! lowercase GUID, what every object's id is) is kept in the entry as its 16 bytes; any other
//! id is kept once, end to end in an arena, and the entry says where. About 50 bytes an
//! object where a `HashMap<Box<str>, _>` took 120–160, and ids kept as text with each
//! version's `valid_from` 94. A removed object is marked, not moved.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// An open version: kept small, there is one per object.
#[derive(Debug, Clone, Copy)]
pub(super) struct Open {
    /// The version's row hash.
    pub hash: u128,
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

const SEEN: u8 = 1;
const IN_CURRENT: u8 = 2;
const REMOVED: u8 = 4;
/// The id is a GUID held in `id` (else `id` is the arena block, start and length).
const GUID: u8 = 8;

/// One object's id and open version, flat: 40 bytes (a `u128` field would align the entry
/// to 16 and make it 48).
#[derive(Debug)]
struct Entry {
    hash: [u64; 2],
    id: [u32; 4],
    scope: u32,
    flags: u8,
}

impl Entry {
    fn open(&self) -> Open {
        Open {
            hash: (u128::from(self.hash[0]) << 64) | u128::from(self.hash[1]),
            scope: self.scope,
            seen: self.flags & SEEN != 0,
            in_current: self.flags & IN_CURRENT != 0,
        }
    }

    fn set_open(&mut self, open: Open) {
        self.hash = [(open.hash >> 64) as u64, open.hash as u64];
        self.scope = open.scope;
        let keep = self.flags & (REMOVED | GUID);
        self.flags =
            keep | if open.seen { SEEN } else { 0 } | if open.in_current { IN_CURRENT } else { 0 };
    }

    fn removed(&self) -> bool {
        self.flags & REMOVED != 0
    }

    fn key<'a>(&self, ids: &'a [String]) -> Key<'a> {
        if self.flags & GUID != 0 {
            let [a, b, c, d] = self.id.map(u128::from);
            Key::Guid((a << 96) | (b << 64) | (c << 32) | d)
        } else {
            let [block, start, len, _] = self.id.map(|n| n as usize);
            Key::Text(&ids[block][start..start + len])
        }
    }
}

/// An id as the index keeps it. Ids in canonical GUID form are always `Guid`, others always
/// `Text` (only [`Key::of`] and [`Entry::key`] make keys), so two equal ids always have equal
/// keys (and hashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key<'a> {
    Guid(u128),
    Text(&'a str),
}

impl<'a> Key<'a> {
    fn of(id: &'a str) -> Self {
        parse_guid(id).map_or(Key::Text(id), Key::Guid)
    }
}

/// An id listed by [`OpenIndex::iter`]: it prints as the text it was offered as.
#[derive(Debug, Clone, Copy)]
pub(super) struct Id<'a>(Key<'a>);

impl std::fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Key::Text(s) => f.write_str(s),
            Key::Guid(bits) => {
                let hex = format!("{bits:032x}");
                write!(
                    f,
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                )
            }
        }
    }
}

/// The 128 bits of a GUID in canonical form (lowercase hex, hyphens at 8, 13, 18 and 23),
/// the only form that prints back to the same text.
fn parse_guid(id: &str) -> Option<u128> {
    let bytes = id.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut bits = 0u128;
    for (i, &b) in bytes.iter().enumerate() {
        let digit = match (i, b) {
            (8 | 13 | 18 | 23, b'-') => continue,
            (8 | 13 | 18 | 23, _) => return None,
            (_, b'0'..=b'9') => b - b'0',
            (_, b'a'..=b'f') => b - b'a' + 10,
            _ => return None,
        };
        bits = (bits << 4) | u128::from(digit);
    }
    Some(bits)
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

impl OpenIndex {
    /// Objects with an open version.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Where the open version of `id` is: entries are numbered from 0 in the order their ids
    /// were first inserted, and keep their number (a caller can keep more per object beside
    /// the index, by number).
    pub fn position(&self, id: &str) -> Option<u32> {
        self.find(Key::of(id))
            .filter(|&i| !entry_in(&self.entries, i).removed())
    }

    /// The number the next new id will get.
    pub fn next_position(&self) -> u32 {
        self.count
    }

    fn find(&self, key: Key<'_>) -> Option<u32> {
        self.find_hashed(self.hasher.hash_one(key), key)
    }

    fn find_hashed(&self, hash: u64, key: Key<'_>) -> Option<u32> {
        self.slots
            .find(hash, |&i| entry_in(&self.entries, i).key(&self.ids) == key)
            .copied()
    }

    fn entry_mut(&mut self, i: u32) -> &mut Entry {
        let (block, at) = place(i);
        &mut self.entries[block][at]
    }

    /// The open version of `id`.
    pub fn get(&self, id: &str) -> Option<Open> {
        self.find(Key::of(id))
            .map(|i| entry_in(&self.entries, i))
            .filter(|e| !e.removed())
            .map(Entry::open)
    }

    /// Changes the open version of `id` with `change`; none when `id` has none.
    pub fn update<R>(&mut self, id: &str, change: impl FnOnce(&mut Open) -> R) -> Option<R> {
        let i = self.find(Key::of(id))?;
        let e = self.entry_mut(i);
        if e.removed() {
            return None;
        }
        let mut open = e.open();
        let result = change(&mut open);
        e.set_open(open);
        Some(result)
    }

    /// Sets the open version of `id`; returns the one it replaces.
    pub fn insert(&mut self, id: &str, open: Open) -> Option<Open> {
        let key = Key::of(id);
        let hash = self.hasher.hash_one(key);
        if let Some(i) = self.find_hashed(hash, key) {
            let e = self.entry_mut(i);
            let old = (!e.removed()).then(|| e.open());
            let revived = e.removed();
            e.flags &= !REMOVED;
            e.set_open(open);
            if revived {
                self.live += 1;
            }
            return old;
        }
        let index = self.count;
        self.count = index
            .checked_add(1)
            .expect("fewer than 4 billion objects of one entity in a run");
        let (id, flags) = match key {
            Key::Guid(bits) => (
                [
                    (bits >> 96) as u32,
                    (bits >> 64) as u32,
                    (bits >> 32) as u32,
                    bits as u32,
                ],
                GUID,
            ),
            Key::Text(text) => (self.arena_push(text), 0),
        };
        let mut entry = Entry {
            hash: [0; 2],
            id,
            scope: 0,
            flags,
        };
        entry.set_open(open);
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
            hasher.hash_one(entry_in(entries, i).key(ids))
        });
        None
    }

    /// Keeps a text id in the arena; returns its block, start and length.
    fn arena_push(&mut self, text: &str) -> [u32; 4] {
        let fits = self
            .ids
            .last()
            .is_some_and(|b| b.capacity() - b.len() >= text.len());
        if !fits {
            self.ids
                .push(String::with_capacity(ID_BLOCK_BYTES.max(text.len())));
        }
        let block = self.ids.len() - 1;
        let arena = &mut self.ids[block];
        let start = arena.len();
        arena.push_str(text);
        [block as u32, start as u32, text.len() as u32, 0]
    }

    /// Removes the open version of `id`; returns it.
    pub fn remove(&mut self, id: &str) -> Option<Open> {
        let i = self.find(Key::of(id))?;
        let e = self.entry_mut(i);
        if e.removed() {
            return None;
        }
        e.flags |= REMOVED;
        let open = e.open();
        self.live -= 1;
        Some(open)
    }

    /// Every object with an open version, in the order first offered (its id prints as the
    /// text it was offered as).
    pub fn iter(&self) -> impl Iterator<Item = (Id<'_>, Open)> {
        self.entries
            .iter()
            .flatten()
            .filter(|e| !e.removed())
            .map(|e| (Id(e.key(&self.ids)), e.open()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(hash: u128) -> Open {
        Open {
            hash,
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
        index
            .update(some_id, |o| o.seen = true)
            .expect("it is open");
        assert_eq!(index.iter().filter(|(_, o)| o.seen).count(), 1);
    }

    #[test]
    fn guids_are_kept_as_bits_and_print_back_as_offered() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
        let canonical = "a931ae79-63f2-424a-a1ca-ceca05299fa1";
        // Not canonical, so kept as text: upper case, braces, a misplaced hyphen, too short,
        // a non-ASCII digit in 36 bytes, too long.
        let others = [
            "A931AE79-63F2-424A-A1CA-CECA05299FA1",
            "{a931ae79-63f2-424a-a1ca-ceca05299fa1}",
            "a931ae7963f2-424a-a1ca-ceca05299fa1-",
            "a931ae79-63f2-424a-a1ca-ceca05299fa",
            "a931ae79-63f2-424a-a1ca-ceca05299f\u{0661}",
            "00000000-0000-0000-0000-000000000000x",
        ];
        // The misplaced hyphen and the non-ASCII digit are refused for what they are, not
        // for their length.
        assert!(others[2].len() == 36 && others[4].len() == 36);
        assert!(parse_guid(canonical).is_some());
        assert!(parse_guid("00000000-0000-0000-0000-000000000000") == Some(0));
        let mut index = OpenIndex::default();
        index.insert(canonical, open(1));
        index.insert("00000000-0000-0000-0000-000000000000", open(2));
        for (n, id) in others.iter().enumerate() {
            assert!(parse_guid(id).is_none(), "{id}");
            index.insert(id, open(10 + n as u128));
        }
        assert_eq!(index.len(), 2 + others.len());
        assert_eq!(index.get(canonical).map(|o| o.hash), Some(1));
        assert_eq!(index.get(others[0]).map(|o| o.hash), Some(10));
        assert_eq!(index.position(canonical), Some(0));
        assert_eq!(index.position(others[1]), Some(3));
        assert_eq!(index.next_position(), 2 + others.len() as u32);
        let printed: Vec<String> = index.iter().map(|(id, _)| id.to_string()).collect();
        let mut offered = vec![canonical, "00000000-0000-0000-0000-000000000000"];
        offered.extend(others);
        assert_eq!(printed, offered);
        assert!(
            index
                .iter()
                .take(2)
                .all(|(id, _)| matches!(id.0, Key::Guid(_)))
        );
        assert_eq!(index.remove(canonical).map(|o| o.hash), Some(1));
        assert!(index.get(canonical).is_none());
        assert!(index.update(canonical, |o| o.seen = true).is_none());
        assert!(index.position(canonical).is_none());
        index.insert(canonical, open(3));
        assert_eq!(index.get(canonical).map(|o| o.hash), Some(3));
        assert_eq!(index.position(canonical), Some(0));
        assert_eq!(index.len(), 2 + others.len());
    }
}
