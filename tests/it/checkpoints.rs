//! Checkpoints on long-lived tables (RELIABILITY A.8): a table with hundreds of commits is
//! checkpointed every `checkpoint_interval_commits` (100) commits, `_last_checkpoint` names
//! the newest checkpoint, and a fresh open reads from it (it still opens when the commits
//! before it are gone, as Delta's log cleanup leaves them). A table whose checkpoints were
//! skipped gets one from the next writer.

use std::path::Path;

use govlake::lake::{Cell, Column, ColumnType, Lake, LakeLocation, TableSchema};

fn lake(dir: &Path, checkpoint_interval_commits: u32) -> Lake {
    let loc = LakeLocation::resolve(dir.to_str().unwrap(), Default::default()).unwrap();
    let mut retention = govlake::config::RetentionConfig::default();
    retention.checkpoint_interval_commits = checkpoint_interval_commits;
    Lake::new(loc).with_retention(retention)
}

fn schema(name: &str) -> TableSchema {
    TableSchema {
        name: name.into(),
        columns: vec![Column {
            name: "id".into(),
            ty: ColumnType::Str,
        }],
        partition_by: vec![],
    }
}

/// `commits` one-row appends (plus the creating commit, version 0).
async fn append_many(lake: &Lake, table: &str, commits: usize) {
    let writer = lake.clone().guarded();
    for i in 0..commits {
        let row = vec![vec![Cell::Str(format!("row-{i}"))]];
        writer
            .append(&schema(table), &row, &Default::default())
            .await
            .unwrap();
    }
}

fn last_checkpoint(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log.join("_last_checkpoint")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["version"]
        .as_u64()
        .unwrap()
}

fn checkpoint_file(log: &Path, version: u64) -> std::path::PathBuf {
    log.join(format!("{version:020}.checkpoint.parquet"))
}

async fn rows(lake: &Lake, table: &str) -> usize {
    let mut n = 0;
    lake.scan_strings(table, &["id"], |_| n += 1).await.unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_250_commits_opens_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(dir.path(), 100);
    append_many(&lake, "ticks", 250).await;
    let log = dir.path().join("ticks/_delta_log");

    // Versions 0..=250: checkpoints after every 100 commits.
    for v in [99, 199] {
        assert!(checkpoint_file(&log, v).is_file(), "checkpoint at {v}");
    }
    assert!(!checkpoint_file(&log, 249).exists());
    assert_eq!(last_checkpoint(&log), 199);

    // A fresh open reads the checkpoint and the 51 commits after it: with every earlier
    // commit deleted (as log cleanup does), the table still opens whole.
    for v in 0..199u64 {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
    let fresh = self::lake(dir.path(), 100);
    assert_eq!(fresh.version("ticks").await.unwrap(), Some(250));
    assert_eq!(rows(&fresh, "ticks").await, 250);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_checkpoints_gets_one_from_the_next_writer() {
    let dir = tempfile::tempdir().unwrap();
    // Created with a longer interval (by another tool, or an older setting): 150 commits and
    // no checkpoint.
    append_many(&lake(dir.path(), 1000), "ticks", 150).await;
    let log = dir.path().join("ticks/_delta_log");
    assert!(!log.join("_last_checkpoint").exists());

    // A writer with the lake's interval (100) catches up at once.
    let lake = lake(dir.path(), 100);
    assert_eq!(lake.checkpoint_if_due("ticks").await.unwrap(), Some(150));
    assert!(checkpoint_file(&log, 150).is_file());
    assert_eq!(last_checkpoint(&log), 150);
    // ... and not again until 100 more commits.
    append_many(&lake, "ticks", 5).await;
    assert_eq!(lake.checkpoint_if_due("ticks").await.unwrap(), None);
    assert_eq!(rows(&self::lake(dir.path(), 100), "ticks").await, 155);
}
