//! Stage 3, query: a DataFusion session over the lake, with every lake table registered
//! under its name; `views` adds the governance views of `queries/*.sql`.

pub mod views;

use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

use crate::ingest::spec::ENTITIES;
use crate::lake::bookkeeping::{INGEST_RUNS, RAW, REJECTS};
use crate::lake::{Lake, Result};

/// Names of every table the lake holds, in a fixed order: entity tables (with their
/// `_history` companions) then bookkeeping.
pub fn table_names() -> Vec<String> {
    let mut names = Vec::new();
    for e in ENTITIES.iter() {
        names.push(e.table.to_string());
        if e.versioned().is_some() {
            names.push(format!("{}_history", e.table));
        }
    }
    names.extend([RAW, REJECTS, INGEST_RUNS].map(String::from));
    names
}

/// A session with every existing lake table registered. Tables not yet created are skipped.
pub async fn session(lake: &Lake) -> Result<SessionContext> {
    session_as_of(lake, None).await
}

/// Like [`session`], with every table as it was at `as_of` (UTC micros; Delta commit time).
/// A table with no commit at or before that time is absent from the session.
pub async fn session_as_of(lake: &Lake, as_of: Option<i64>) -> Result<SessionContext> {
    let config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(2);
    let ctx = SessionContext::new_with_config(config);
    for name in table_names() {
        lake.register(&ctx, &name, as_of).await?;
    }
    Ok(ctx)
}
