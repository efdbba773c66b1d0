//! Finding input files: walks `--from` paths recursively in a fixed (sorted) order, keeps
//! `.json`, `.jsonl` and `.ndjson` files, also compressed (`.json.zst`, `.jsonl.gz`, …: read
//! as the name without the compression suffix says, [`Compression`]), and reads `_export.json` markers that say when an
//! export was taken (the observation time of its snapshots). Symbolic links are followed;
//! one that is broken or loops back is listed as unreadable (and rejected by name), never
//! skipped quietly.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};

/// File name of the export marker written by `govlake generate` and by export scripts.
pub const EXPORT_MARKER: &str = "_export.json";

/// Input files and the observation times their markers declare.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Files to read, sorted, each with its size in bytes.
    pub files: Vec<(PathBuf, u64)>,
    /// `exportedAt` of every marker found (UTC micros), with the marker's path.
    pub exported_at: Vec<(PathBuf, i64)>,
    /// Entries that could not be followed (a broken or looping link), with why.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Whether the file is an export marker (`_export.json`, also compressed).
fn is_marker(p: &Path) -> bool {
    uncompressed_name(p)
        .0
        .file_name()
        .is_some_and(|n| n == EXPORT_MARKER)
}

fn is_data_file(p: &Path) -> bool {
    matches!(
        extension(&uncompressed_name(p).0).as_str(),
        "json" | "jsonl" | "ndjson"
    )
}

/// A file name's extension, lower case ("" when none).
pub fn extension(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// How an input file is compressed, told by its last extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.zst`: Zstandard (what a live run's spool writes).
    Zstd,
    /// `.gz`: gzip.
    Gzip,
}

/// The name a file is read as, and its compression: `assignments-0002.json.zst` is read as
/// `assignments-0002.json`, Zstandard-compressed. A name without `.zst` or `.gz` is itself.
pub fn uncompressed_name(p: &Path) -> (PathBuf, Option<Compression>) {
    let compression = match extension(p).as_str() {
        "zst" => Compression::Zstd,
        "gz" => Compression::Gzip,
        _ => return (p.to_path_buf(), None),
    };
    (p.with_extension(""), Some(compression))
}

/// Reads `reader` (a file's bytes as stored) decompressed as `compression` says.
pub fn decoded<'a>(
    reader: impl std::io::Read + 'a,
    compression: Option<Compression>,
) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
    Ok(match compression {
        None => Box::new(reader),
        Some(Compression::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Some(Compression::Zstd) => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
}

/// Lists the files under the given paths. A path named explicitly is read whatever its
/// extension; inside folders, hidden entries are skipped.
pub fn discover(paths: &[PathBuf]) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    for root in paths {
        let meta = std::fs::metadata(root).map_err(|source| Error::Input {
            path: root.clone(),
            source,
        })?;
        if meta.is_file() {
            if is_marker(root) {
                inputs.exported_at.push((root.clone(), read_marker(root)?));
            } else {
                inputs.files.push((root.clone(), meta.len()));
            }
            continue;
        }
        let walker = walkdir::WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let path = e.path().map_or_else(|| root.clone(), Path::to_path_buf);
                    let reason = if let Some(ancestor) = e.loop_ancestor() {
                        format!(
                            "a link that loops back to `{}`: not followed",
                            ancestor.display()
                        )
                    } else if let Some(io) = e.io_error() {
                        format!("cannot be followed or read: {io}")
                    } else {
                        e.to_string()
                    };
                    inputs.unreadable.push((path, reason));
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let p = entry.path();
            if is_marker(p) {
                inputs.exported_at.push((p.to_path_buf(), read_marker(p)?));
            } else if is_data_file(p) {
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                inputs.files.push((p.to_path_buf(), len));
            }
        }
    }
    if inputs.files.is_empty() && inputs.unreadable.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
        return Err(Error::NoFiles(names.join(", ")));
    }
    Ok(inputs)
}

fn read_marker(path: &Path) -> Result<i64> {
    let bad = |reason: String| Error::Marker {
        path: path.to_path_buf(),
        reason,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| decoded(f, uncompressed_name(path).1))
        .and_then(|mut r| r.read_to_string(&mut text))
        .map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let at = v
        .get("exportedAt")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("it has no `exportedAt` timestamp".into()))?;
    crate::time::parse_ts(at).ok_or_else(|| bad(format!("`exportedAt` is not a timestamp: {at}")))
}
