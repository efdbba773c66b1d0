//! Dedupe keys that do not grow in memory with the lake: the set of 128-bit keys an ingest
//! has seen (ids of audit events already stored or read this run, hashes of raw records).
//!
//! The newest keys sit in a hash set. When it holds [`KeySet::with_limit`] keys it is
//! sorted and written to a file in a private temporary folder (`$TMPDIR`, removed with the
//! set); of each such sorted run only a Bloom filter (10 bits per key, about 1 % false
//! positives) and every 256th key stay in memory, so a lookup of a key that is not there
//! almost never reads the disk, and one that is reads one 4 KiB block. Past
//! [`MAX_RUNS`] runs they are merged into one. At 30 million keys this holds about 64–128
//! MiB (Bloom filters are rounded up to a power of two, and a merge holds the old and the new
//! filter) plus the hash set, where a hash set of every key held about 1 GiB; it keeps 16
//! bytes per key on disk, 32 while a merge writes the new run beside the old ones. The
//! folder's name carries the process id, so a later ingest removes the folders of one that
//! was killed before it could.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;

/// Keys in memory before they are written to a sorted run.
pub const DEFAULT_LIMIT: usize = 1 << 20;

/// Sorted runs kept apart before they are merged into one.
pub const MAX_RUNS: usize = 4;

/// Keys per block of a run: one read of a lookup.
const BLOCK_KEYS: usize = 256;
const KEY_BYTES: usize = 16;

/// A set of 128-bit keys, spilling to sorted files past a limit.
pub struct KeySet {
    recent: HashSet<u128>,
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
            recent: HashSet::new(),
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

    /// Writes the in-memory keys to a new sorted run, then merges the runs if there are
    /// too many.
    fn spill(&mut self) -> io::Result<()> {
        let mut keys: Vec<u128> = self.recent.drain().collect();
        self.recent.shrink_to(self.limit);
        keys.sort_unstable();
        let path = self.new_path()?;
        let run = SortedRun::write(path, keys.len(), keys.into_iter())?;
        self.runs.push(run);
        if self.runs.len() > MAX_RUNS {
            self.merge_runs()?;
        }
        Ok(())
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

    /// Merges every run into one (the runs hold disjoint keys: a key is inserted only when
    /// no run has it).
    fn merge_runs(&mut self) -> io::Result<()> {
        let runs = std::mem::take(&mut self.runs);
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
        let mut bytes = vec![0u8; count * KEY_BYTES];
        read_exact_at(&self.file, &mut bytes, (start * KEY_BYTES) as u64)?;
        let keys: Vec<u128> = bytes
            .chunks_exact(KEY_BYTES)
            .map(|c| u128::from_be_bytes(c.try_into().expect("16 bytes")))
            .collect();
        Ok(keys.binary_search(&key).is_ok())
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

/// A Bloom filter over keys that are already uniform hashes: the two 64-bit halves of a
/// key give the probe positions (double hashing).
struct Bloom {
    bits: Vec<u64>,
    mask: u64,
}

const BLOOM_PROBES: usize = 7;

impl Bloom {
    /// About 10 bits per key, rounded up to a power of two.
    fn new(keys: usize) -> Self {
        let bits = (keys.max(1) * 10).next_power_of_two().max(64);
        Self {
            bits: vec![0; bits / 64],
            mask: bits as u64 - 1,
        }
    }

    fn positions(&self, key: u128) -> [u64; BLOOM_PROBES] {
        let (h1, h2) = (key as u64, ((key >> 64) as u64) | 1);
        std::array::from_fn(|i| h1.wrapping_add((i as u64).wrapping_mul(h2)) & self.mask)
    }

    fn insert(&mut self, key: u128) {
        for p in self.positions(key) {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    fn may_contain(&self, key: u128) -> bool {
        self.positions(key)
            .into_iter()
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
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
        assert!(
            (1..=MAX_RUNS).contains(&set.runs.len()),
            "{} runs",
            set.runs.len()
        );
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
        assert!(false_positives < 3_000, "{false_positives} of 100,000");
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
