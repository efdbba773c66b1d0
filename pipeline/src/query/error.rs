//! Errors of the query stage: a view that does not plan or run names the view, the query
//! file to fix and (for a missing column) the column; a bad `--as-of` or `--memory-limit`
//! value says what form is expected.

use deltalake::datafusion::common::SchemaError;
use deltalake::datafusion::error::DataFusionError;

/// Result of query operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while setting up a session or registering the views.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A view reads a column that none of the tables or views it reads has.
    #[error(
        "View `{view}` reads a column `{column}` that the tables and views it reads do not have: fix queries/{view}.sql (or the copy `--queries` names)"
    )]
    ViewColumn {
        /// The view.
        view: String,
        /// The column, as the query names it.
        column: String,
        /// Cause.
        #[source]
        source: Box<DataFusionError>,
    },
    /// A view's query does not parse, plan or run.
    #[error(
        "View `{view}` could not be registered: fix queries/{view}.sql (or the copy `--queries` names)"
    )]
    View {
        /// The view.
        view: String,
        /// Cause.
        #[source]
        source: Box<DataFusionError>,
    },
    /// A `DATAFUSION_*` environment variable names no DataFusion setting or holds a value
    /// the setting does not take.
    #[error(
        "A DATAFUSION_* environment variable is not a valid DataFusion setting: fix or unset it"
    )]
    Settings {
        /// Cause (names the setting and the value).
        #[source]
        source: Box<DataFusionError>,
    },
    /// The session's runtime (memory pool, spill folder) could not be built.
    #[error("Cannot set up the query session (memory pool and spill folder); check `TMPDIR`")]
    Runtime {
        /// Cause.
        #[source]
        source: Box<DataFusionError>,
    },
    /// A state of the lake without stored request links and their events' step columns
    /// (format 1 or 2, a time before the lake reached format 3, or a pinned version without
    /// the columns) could not be read through the rule that stands in for
    /// `audit_event_requests`.
    #[error(
        "Cannot read the audit events' request links through the link rule (the lake, or the time read, is from before format 3 stored them with their events' columns); query the pinned tables directly, or report this as a bug"
    )]
    LinkRule {
        /// Cause.
        #[source]
        source: Box<DataFusionError>,
    },
    /// A lake table could not be registered.
    #[error(transparent)]
    Lake(#[from] crate::lake::Error),
}

impl Error {
    /// The error of view `view` for a DataFusion error, classified by its variant: a field
    /// the schema lacks becomes [`Error::ViewColumn`], anything else [`Error::View`].
    pub fn view(view: &str, source: DataFusionError) -> Self {
        let column = match source.find_root() {
            DataFusionError::SchemaError(e, _) => match e.as_ref() {
                SchemaError::FieldNotFound { field, .. } => Some(field.name.clone()),
                _ => None,
            },
            _ => None,
        };
        let source = Box::new(source);
        match column {
            Some(column) => Self::ViewColumn {
                view: view.into(),
                column,
                source,
            },
            None => Self::View {
                view: view.into(),
                source,
            },
        }
    }
}

/// What is wrong with an `--as-of` or `--memory-limit` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// A comma-separated item without `=`.
    #[error("`{pair}` is not table=version")]
    NotTableVersion {
        /// The item.
        pair: String,
    },
    /// A pin of a table the lake does not have.
    #[error("`{table}` is not a lake table (`govlake tables` lists them)")]
    UnknownTable {
        /// The name given.
        table: String,
    },
    /// A version that is not a whole number.
    #[error("`{pair}`: the version must be a whole number")]
    BadVersion {
        /// The item.
        pair: String,
        /// Cause.
        #[source]
        source: std::num::ParseIntError,
    },
    /// A bare number: versions are per table.
    #[error(
        "a bare version `{text}` is ambiguous: Delta versions are per table; write table={text} (e.g. audit_events={text}), or give an RFC 3339 time"
    )]
    BareVersion {
        /// The number given.
        text: String,
    },
    /// Neither a time nor pins.
    #[error(
        "`{text}` is neither an RFC 3339 time (e.g. 2026-10-01T06:00:00Z) nor table=version pairs"
    )]
    NotAsOf {
        /// The value given.
        text: String,
    },
    /// Not a size.
    #[error("`{text}` is not a memory size (e.g. 512M, 8G, 25%)")]
    NotMemorySize {
        /// The value given.
        text: String,
    },
    /// A share outside (0, 100].
    #[error("`{text}`: a share of memory is between 0 and 100%")]
    ShareOutOfRange {
        /// The value given.
        text: String,
    },
    /// A share, where the machine's memory is unknown.
    #[error("`{text}`: the machine's memory is unknown here; give a size (e.g. 8G)")]
    MemoryUnknown {
        /// The value given.
        text: String,
    },
}
