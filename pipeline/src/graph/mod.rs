//! Stage 1, live source: Microsoft Graph. `credential` says how the app signs in, `client`
//! fetches tokens and pages safely under throttling and faults (`scrub` keeps secrets out of
//! the server answers its errors show), `crawl` lists every collection (incrementally for audit events)
//! into a spool folder that the file ingest then reads. The Graph simulator that tests, demos
//! and benchmarks run against is a crate of its own (`pipeline/graph-sim`, `govlake-graph-sim`).

pub mod client;
pub mod crawl;
pub mod credential;
pub mod scrub;
