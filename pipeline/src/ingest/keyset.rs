//! Dedupe keys that do not grow in memory with the lake: the set of 128-bit keys an ingest
//! has seen (ids of audit events already stored or read this run, hashes of raw records).
//!
//! The newest keys sit in a hash set. When it holds [`KeySet::with_limit`] keys it is
//! sorted and written to a file in a private temporary folder (`$TMPDIR`, removed with the
//! set); of each such sorted run only a blocked Bloom filter (16 bits per key, under 0.1 %
//! false positives, one cache line per lookup) and every 256th key stay in memory, so a
//! lookup of a key that is not there almost never reads the disk, and one that is reads one
//! 4 KiB block. Runs are merged by size tier ([`RUNS_PER_MERGE`]), so the work of merging
//! grows as n log n with the keys, not n². At 30 million keys this holds about 60–120 MiB
//! (a merge holds the old filters and the new one) plus the hash set, where a hash set of
//! every key held about 1 GiB; it keeps 16
//! bytes per key on disk, 32 while a merge writes the new run beside the old ones. The
//! folder's name carries the process id, so a later ingest removes the folders of one that
//! was killed before it could.

use std::collections::HashSet;
use std::fs::File;
use std::hash::BuildHasherDefault;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

/// Keys in memory before they are written to a sorted run. At a million (two sets, audit
/// ids and raw hashes, each with a hash set of 2^21 slots) they held ~70 MiB of an ingest's
/// peak; at 262,144 an ingest of 1M audit events peaked ~48 MiB lower in the same time.
pub const DEFAULT_LIMIT: usize = 1 << 18;

/// Runs of one size tier merged into one: a run of `limit` × 4^t keys or more (up to the
/// next power) is of tier t, and when four runs share the newest tier they are merged, so a
/// key is rewritten once per tier (log₄ of the keys over the limit times) and a lookup
/// checks at most three runs per tier.
pub const RUNS_PER_MERGE: usize = 4;

/// Keys per block of a run: one read of a lookup.
const BLOCK_KEYS: usize = 256;
const KEY_BYTES: usize = 16;

/// A set of 128-bit keys, spilling to sorted files past a limit.
pub struct KeySet {
    recent: HashSet<u128, BuildHasherDefault<FoldKey>>,
    runs: Vec<SortedRun>,
    limit: usize,
    folder: Option<tempfile::TempDir>,
    next_file: u64,
}

/// A sorted file of keys, with what stays in memory to look one up.
struct SortedRun {
    file: File,
    path: PathBuf,
    len: usize,
    /// The first key of each block.
    index: Vec<u128>,
    bloom: Bloom,
}

impl Default for KeySet {
    fn default() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }
}

impl KeySet {
    /// A set that holds up to `limit` keys in memory (at least 1).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            recent: HashSet::default(),
            runs: vec![],
            limit: limit.max(1),
            folder: None,
            next_file: 0,
        }
    }

    /// The number of keys in the set.
    pub fn len(&self) -> usize {
        self.recent.len() + self.runs.iter().map(|r| r.len).sum::<usize>()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `key` is in the set.
    pub fn contains(&self, key: u128) -> io::Result<bool> {
        Ok(self.recent.contains(&key) || self.runs_contain(key)?)
    }

    /// Adds `key`; `true` when it was not in the set.
    pub fn insert(&mut self, key: u128) -> io::Result<bool> {
        if self.recent.contains(&key) || self.runs_contain(key)? {
            return Ok(false);
        }
        self.recent.insert(key);
        if self.recent.len() >= self.limit {
            self.spill()?;
        }
        Ok(true)
    }

    fn runs_contain(&self, key: u128) -> io::Result<bool> {
        for run in &self.runs {
            if run.contains(key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Writes the in-memory keys to a new sorted run, then merges the newest runs while
    /// [`RUNS_PER_MERGE`] of them share a tier.
    fn spill(&mut self) -> io::Result<()> {
        let mut keys: Vec<u128> = self.recent.drain().collect();
        self.recent.shrink_to(self.limit);
        keys.sort_unstable();
        let path = self.new_path()?;
        let run = SortedRun::write(path, keys.len(), keys.into_iter())?;
        self.runs.push(run);
        loop {
            let tier = |run: &SortedRun| (run.len / self.limit).max(1).ilog(RUNS_PER_MERGE);
            let newest = tier(self.runs.last().expect("pushed above"));
            let same = self
                .runs
                .iter()
                .rev()
                .take_while(|r| tier(r) == newest)
                .count();
            if same < RUNS_PER_MERGE {
                return Ok(());
            }
            self.merge_newest(same)?;
        }
    }

    fn new_path(&mut self) -> io::Result<PathBuf> {
        if self.folder.is_none() {
            let temp = std::env::temp_dir();
            remove_abandoned_folders(&temp);
            self.folder = Some(
                tempfile::Builder::new()
                    .prefix(&format!("{FOLDER_PREFIX}{}-", std::process::id()))
                    .tempdir_in(&temp)?,
            );
        }
        self.next_file += 1;
        let folder = self.folder.as_ref().expect("created above");
        Ok(folder
            .path()
            .join(format!("run-{:06}.keys", self.next_file)))
    }

    /// Merges the newest `count` runs into one (the runs hold disjoint keys: a key is
    /// inserted only when no run has it).
    fn merge_newest(&mut self, count: usize) -> io::Result<()> {
        let runs = self.runs.split_off(self.runs.len() - count);
        let total = runs.iter().map(|r| r.len).sum();
        let mut readers = runs
            .iter()
            .map(|r| Ok(RunReader::new(File::open(&r.path)?)))
            .collect::<io::Result<Vec<_>>>()?;
        let mut heads = readers
            .iter_mut()
            .map(RunReader::next)
            .collect::<io::Result<Vec<_>>>()?;
        let merged = std::iter::from_fn(|| {
            let (i, key) = heads
                .iter()
                .enumerate()
                .filter_map(|(i, k)| k.map(|k| (i, k)))
                .min_by_key(|&(_, k)| k)?;
            heads[i] = readers[i].next().unwrap_or(None);
            Some(key)
        });
        let path = self.new_path()?;
        let run = SortedRun::write(path, total, merged)?;
        if run.len != total {
            return Err(io::Error::other(format!(
                "merging key runs kept {} of {total} keys: a run file was cut short",
                run.len
            )));
        }
        for r in runs {
            let _ = std::fs::remove_file(&r.path);
        }
        self.runs.push(run);
        Ok(())
    }
}

impl SortedRun {
    /// Writes `keys` (ascending; `expected` of them, to size the filter) to `path`.
    fn write(path: PathBuf, expected: usize, keys: impl Iterator<Item = u128>) -> io::Result<Self> {
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut bloom = Bloom::new(expected);
        let mut index = Vec::with_capacity(expected / BLOCK_KEYS + 1);
        let mut len = 0;
        for key in keys {
            if len % BLOCK_KEYS == 0 {
                index.push(key);
            }
            bloom.insert(key);
            out.write_all(&key.to_be_bytes())?;
            len += 1;
        }
        out.flush()?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        Ok(Self {
            file,
            path,
            len,
            index,
            bloom,
        })
    }

    fn contains(&self, key: u128) -> io::Result<bool> {
        if !self.bloom.may_contain(key) {
            return Ok(false);
        }
        // The block whose first key is the greatest not above `key`.
        let block = match self.index.partition_point(|&first| first <= key) {
            0 => return Ok(false),
            n => n - 1,
        };
        let start = block * BLOCK_KEYS;
        let count = BLOCK_KEYS.min(self.len - start);
        let mut bytes = [0u8; BLOCK_KEYS * KEY_BYTES];
        let bytes = &mut bytes[..count * KEY_BYTES];
        read_exact_at(&self.file, bytes, (start * KEY_BYTES) as u64)?;
        let nth = |i: usize| {
            let at = i * KEY_BYTES;
            u128::from_be_bytes(bytes[at..at + KEY_BYTES].try_into().expect("16 bytes"))
        };
        let (mut low, mut high) = (0, count);
        while low < high {
            let mid = (low + high) / 2;
            match nth(mid).cmp(&key) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Ok(true),
            }
        }
        Ok(false)
    }
}

/// Reads a run's keys in order.
struct RunReader(BufReader<File>);

impl RunReader {
    fn new(file: File) -> Self {
        Self(BufReader::with_capacity(1 << 20, file))
    }

    fn next(&mut self) -> io::Result<Option<u128>> {
        let mut bytes = [0u8; KEY_BYTES];
        match self.0.read_exact(&mut bytes) {
            Ok(()) => Ok(Some(u128::from_be_bytes(bytes))),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Hashes a key that is already a uniform hash by folding its two halves: hashing it again
/// (SipHash, the standard set's default) would only cost time.
#[derive(Default)]
struct FoldKey(u64);

impl std::hash::Hasher for FoldKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, key: u128) {
        self.0 ^= (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
    }

    /// Only `u128` keys are hashed; anything else folds its bytes in, eight at a time.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).rotate_left(29);
        }
    }
}

/// A blocked Bloom filter over keys that are already uniform hashes: a key's probes all
/// fall in one 512-bit block (one cache line), chosen by its high half, and the rest of the
/// key gives the probe positions in it. A lookup or an insert touches one cache line where
/// a standard filter touches one per probe. At 16 bits per key under 0.1 % of absent keys
/// (0.07 % in the test below) are answered "maybe" and cost a read of the run's file, which during a
/// large ingest (the export and the lake streaming through the page cache) may come from
/// the disk.
struct Bloom {
    blocks: Vec<[u64; BLOCK_WORDS]>,
}

const BLOCK_WORDS: usize = 8;
const BLOOM_PROBES: u32 = 8;
const BLOOM_BITS_PER_KEY: usize = 16;

impl Bloom {
    /// [`BLOOM_BITS_PER_KEY`] bits per key (whole blocks).
    fn new(keys: usize) -> Self {
        let blocks = (keys.max(1) * BLOOM_BITS_PER_KEY).div_ceil(BLOCK_WORDS * 64);
        Self {
            blocks: vec![[0; BLOCK_WORDS]; blocks],
        }
    }

    /// The block of `key` (its high half scaled to the number of blocks, which takes the
    /// half's top bits) and its probe bits as (word, bit) pairs: nine bits of the key per
    /// probe, from the low half up and then the high half's lowest nine.
    fn probes(&self, key: u128) -> (usize, impl Iterator<Item = (usize, u64)> + use<>) {
        let high = u128::from((key >> 64) as u64);
        let block = ((high * self.blocks.len() as u128) >> 64) as usize;
        let bits = (0..BLOOM_PROBES).map(move |i| {
            let shift = if i < 7 { i * 9 } else { 64 };
            let bit = ((key >> shift) as u64) & 511;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        });
        (block, bits)
    }

    fn insert(&mut self, key: u128) {
        let (block, bits) = self.probes(key);
        let words = &mut self.blocks[block];
        for (w, bit) in bits {
            words[w] |= bit;
        }
    }

    fn may_contain(&self, key: u128) -> bool {
        let (block, mut bits) = self.probes(key);
        let words = &self.blocks[block];
        bits.all(|(w, bit)| words[w] & bit != 0)
    }
}

/// The start of a key folder's name; the owning process's id follows, then a random part.
const FOLDER_PREFIX: &str = "govlake-keys-";

/// Removes the key folders in `temp` that a process no longer running left behind (an
/// ingest killed with `kill -9` cannot remove its own). A folder whose process id is
/// running, or cannot be told, is kept: it may be another ingest's.
fn remove_abandoned_folders(temp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(FOLDER_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if process_has_ended(pid) {
            tracing::debug!(folder = %entry.path().display(), "Removing dedupe keys an ended ingest left behind");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether process `pid` has ended (Linux: no `/proc/PID`); `false` where that cannot be told.
fn process_has_ended(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    cfg!(target_os = "linux") && proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

/// Reads `buf.len()` bytes of `file` at `offset`, without moving a shared cursor.
#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Reads `buf.len()` bytes of `file` at `offset`.
#[cfg(not(unix))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek as _, SeekFrom};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spread(n: u64) -> u128 {
        // Keys as the ingest makes them: uniform over 128 bits.
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&n, &mut h);
        let a = std::hash::Hasher::finish(&h);
        ((a as u128) << 64) | u128::from(a.rotate_left(17) ^ n)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever the limit (so whatever the spills and merges), the set answers like a
        /// plain hash set of every key.
        #[test]
        fn answers_like_a_hash_set(
            ops in proptest::collection::vec(0u64..3_000, 1..6_000),
            limit in 1usize..700,
        ) {
            let mut set = KeySet::with_limit(limit);
            let mut model = HashSet::new();
            for n in ops {
                let key = spread(n);
                prop_assert_eq!(set.contains(key).unwrap(), model.contains(&key));
                prop_assert_eq!(set.insert(key).unwrap(), model.insert(key));
            }
            prop_assert_eq!(set.len(), model.len());
            for n in 0..3_000 {
                prop_assert_eq!(set.contains(spread(n)).unwrap(), model.contains(&spread(n)));
            }
        }
    }

    #[test]
    fn spills_to_disk_and_merges_runs_past_the_limit() {
        let mut set = KeySet::with_limit(1_000);
        for n in 0..25_000 {
            assert!(set.insert(spread(n)).unwrap());
        }
        assert!(
            set.recent.len() < 1_000,
            "the in-memory part stays under the limit"
        );
        // 25 spills of 1,000 keys: tiers merge 4 × 1,000 into 4,000 and 4 × 4,000 into
        // 16,000, leaving 16,000 + 2 × 4,000 + 1,000 on disk in four runs.
        let sizes: Vec<usize> = set.runs.iter().map(|r| r.len).collect();
        assert_eq!(sizes, [16_000, 4_000, 4_000, 1_000]);
        let folder = set.folder.as_ref().unwrap().path().to_path_buf();
        let on_disk: u64 = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, (set.len() - set.recent.len()) as u64 * 16);
        for n in 0..25_000 {
            assert!(!set.insert(spread(n)).unwrap(), "key {n} was kept");
        }
        let misses = (25_000..50_000).filter(|&n| set.contains(spread(n)).unwrap());
        assert_eq!(misses.count(), 0);
        drop(set);
        assert!(!folder.exists(), "the spill folder is removed with the set");
    }

    #[test]
    fn the_filter_rejects_most_absent_keys() {
        let mut bloom = Bloom::new(10_000);
        (0..10_000).for_each(|n| bloom.insert(spread(n)));
        assert!((0..10_000).all(|n| bloom.may_contain(spread(n))));
        let false_positives = (10_000..110_000)
            .filter(|&n| bloom.may_contain(spread(n)))
            .count();
        assert!(false_positives < 500, "{false_positives} of 100,000");
    }

    #[test]
    fn key_folders_of_ended_processes_are_removed_and_others_kept() {
        let temp = tempfile::tempdir().expect("temp");
        // Above Linux's largest process id (2^22), so never running.
        let ended = temp.path().join(format!("{FOLDER_PREFIX}4194305-abc"));
        let mine = temp
            .path()
            .join(format!("{FOLDER_PREFIX}{}-def", std::process::id()));
        let other = temp.path().join("govlake-keys-notapid");
        for d in [&ended, &mine, &other] {
            std::fs::create_dir(d).expect("folder");
            std::fs::write(d.join("run-000001.keys"), b"0123456789abcdef").expect("file");
        }
        remove_abandoned_folders(temp.path());
        assert_eq!(ended.exists(), !cfg!(target_os = "linux"));
        assert!(mine.exists() && other.exists());
    }
}
