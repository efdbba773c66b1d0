//! Stage 2, the lake: Delta tables on object storage.
//!
//! `store` resolves where the lake lives (`backends` builds the S3, Azure and GCS clients),
//! `table` reads and writes Delta tables through
//! delta-rs (and scans them with DataFusion over the same store), `row` is the typed value
//! model, `history` keeps validity intervals for snapshot entities, and `bookkeeping` holds
//! the schemas of the lake's own tables (`_raw`, `_rejects`, `_ingest_runs`, `_pack_pins`),
//! `rechecked` makes DataFusion apply every filter itself (never trusting a scan's "exact"),
//! `global_aggregates` keeps DataFusion from pushing a filter beneath an aggregate that returns
//! a row for an empty input, `compact_joins` makes joins' text columns own their bytes (so
//! memory is counted at what a batch holds), `shared_subplans` computes each repeated
//! subquery once, `estimates` corrects the row estimates join selection reads,
//! `pass_through` is the plan operator those three put in,
//! `retention` keeps the versions evidence packs pinned (`govlake vacuum`), `format` records and
//! checks the lake's format version (`govlake migrate`), `failpoint` holds the crash points
//! tests arm, `lease` lets one `govlake job run` at a time work on a lake, `open_append` keeps
//! an ingest's append-only files open across chunks until it commits them, and `compact`
//! rewrites a table's small files into few large ones (`govlake optimize`).

pub mod backends;
pub mod bookkeeping;
pub mod compact;
pub mod compact_joins;
pub mod error;
pub mod estimates;
pub mod failpoint;
pub mod format;
pub mod global_aggregates;
pub mod history;
pub mod lease;
pub mod open_append;
mod open_index;
pub mod pass_through;
pub mod rechecked;
pub mod retention;
pub mod row;
pub mod shared_subplans;
pub mod store;
pub mod table;

pub use error::{Error, Result};
pub use row::{Cell, Column, ColumnType, TableSchema};
pub use store::LakeLocation;
pub use table::{Lake, TablePin};
