//! Files hashed while they are written: a pack's manifest needs the SHA-256 and size of
//! every payload file, and reading multi-gigabyte populations back to hash them doubled the
//! pack's I/O. [`HashingFile`] hashes the bytes on their way to disk; [`Digests`] keeps
//! each file's digest by its path inside the pack.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

use super::{Result, io_err};

/// SHA-256 (hex) and size of one written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// Bytes written.
    pub bytes: u64,
}

impl FileDigest {
    /// The digest of bytes held in memory.
    pub fn of(bytes: &[u8]) -> Self {
        FileDigest {
            sha256: hex::encode(sha2::Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
        }
    }
}

/// A buffered file that hashes everything written to it.
pub struct HashingFile {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    hash: sha2::Sha256,
    bytes: u64,
}

impl HashingFile {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path).map_err(io_err("create", path))?;
        Ok(HashingFile {
            path: path.to_path_buf(),
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            hash: sha2::Sha256::new(),
            bytes: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the file and returns its digest.
    pub fn finish(mut self) -> Result<FileDigest> {
        self.out.flush().map_err(io_err("write", &self.path))?;
        Ok(FileDigest {
            sha256: hex::encode(self.hash.finalize()),
            bytes: self.bytes,
        })
    }
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Digests of the files written so far, by `/`-separated path inside the pack.
pub type Digests = BTreeMap<String, FileDigest>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_while_writing_is_the_digest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        let mut f = HashingFile::create(&path).unwrap();
        for i in 0..10_000 {
            writeln!(f, "row {i},x").unwrap();
        }
        let digest = f.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(digest.bytes, bytes.len() as u64);
        assert_eq!(digest.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
        assert_eq!(digest, FileDigest::of(&bytes));
    }
}
