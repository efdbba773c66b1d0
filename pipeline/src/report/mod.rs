//! Stage 4, report: turns governance views into evidence. `period` names the quarter under
//! examination, `table` runs a query into a deterministic table of text cells, `package`
//! gathers one access package's sections, `render` fills the minijinja templates of
//! `report-templates/`, `chart` draws inline SVG, `csv` writes spreadsheet-safe CSV, `digest` hashes files while they are written, and
//! `pack` / `sign` / `verify` build, sign and check the quarterly evidence pack (`shared_views`
//! computes once the views a pack reads more than once), and `sample`
//! draws reproducible random samples for auditors' testing.

pub mod chart;
pub mod csv;
pub mod digest;
pub mod pack;
pub mod package;
pub mod period;
pub mod remote;
pub mod render;
pub mod sample;
pub mod shared_views;
pub mod sign;
pub mod table;
pub mod verify;

pub use period::Period;
pub use table::Table;

/// Errors of the report stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query behind a report failed.
    #[error("The query for `{what}` failed")]
    Query {
        /// Which section or view.
        what: String,
        /// Cause.
        #[source]
        source: Box<deltalake::datafusion::error::DataFusionError>,
    },
    /// Converting a result failed.
    #[error("Cannot convert the result of `{what}`")]
    Arrow {
        /// Which section or view.
        what: String,
        /// Cause.
        #[source]
        source: deltalake::arrow::error::ArrowError,
    },
    /// A template failed to render (an undefined value is an error, never an empty cell).
    #[error("Template `{template}` failed to render")]
    Render {
        /// Template name.
        template: String,
        /// Cause.
        #[source]
        source: minijinja::Error,
    },
    /// A file of the report or pack could not be written or read.
    #[error("Cannot {action} `{}`", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Bad input from the user (period, package, key).
    #[error("{0}")]
    Invalid(String),
    /// The lake failed.
    #[error(transparent)]
    Lake(#[from] crate::lake::Error),
    /// A view or the query session failed.
    #[error(transparent)]
    Views(#[from] crate::query::Error),
}

/// Result of report operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
