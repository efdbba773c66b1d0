//! Errors of the ingest stage. Bad records are not errors: they are quarantined in
//! `_rejects` and counted; these are the failures that stop a run.

use std::path::PathBuf;

/// Result of ingest operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What stops an ingest run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input path does not exist or cannot be listed.
    #[error("Cannot read input `{}`", path.display())]
    Input {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// No ingestible file was found under the inputs.
    #[error("No .json, .jsonl or .ndjson files found under {0}")]
    NoFiles(String),
    /// An export marker could not be read.
    #[error("Cannot read the export marker `{}`: {reason}", path.display())]
    Marker {
        /// Path of `_export.json`.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The lake refused a read or write.
    #[error("Lake operation failed")]
    Lake(#[from] crate::lake::Error),
    /// The reader thread died.
    #[error("The file reader stopped unexpectedly")]
    Reader,
    /// A thread preparing the records read died (a bug).
    #[error(
        "Preparing the records read stopped unexpectedly (a bug in govlake: please report it with the log)"
    )]
    Prepare,
    /// The dedupe keys could not be written to or read from their temporary folder.
    #[error(
        "Cannot keep the dedupe keys in the temporary folder (set TMPDIR to a folder with \
         free space, about 16 bytes per record in the lake, twice that while runs merge)"
    )]
    Keys(#[source] std::io::Error),
    /// The task committing a chunk (or finishing a table) died.
    #[error("The task committing a chunk to the lake stopped unexpectedly")]
    Writer,
}
