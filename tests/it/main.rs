//! govlake's integration tests: one binary (STYLE.md H). Each module drives the real
//! `govlake` binary or the library against lakes in temporary folders.

mod backends;
mod bench_layout;
mod checkpoints;
mod common;
mod compact;
mod crash;
mod differential;
mod doctor;
mod first_hour;
mod generate;
mod help;
mod ingest;
mod job;
mod layout;
mod live;
mod nothing_lost;
mod pack;
mod retention;
mod sql;
mod tables;
mod upgrade;
mod views_access;
mod views_approvals;
mod views_policy;
mod views_reviews;
