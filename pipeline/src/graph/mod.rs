//! Stage 1, live source: Microsoft Graph. `credential` says how the app signs in, `client`
//! fetches tokens and pages safely under throttling and faults (`retry` holds the retry
//! rules as one pure function; `scrub` keeps secrets out of the server answers its errors
//! show; `error` is what can go wrong), `crawl` lists every collection (incrementally for
//! audit events) into a spool folder that the file ingest then reads (`live` plans a run
//! from the lake's watermarks and runs fetch-then-ingest). The Graph simulator that tests,
//! demos and benchmarks run against is a crate of its own (`pipeline/graph-sim`,
//! `govlake-graph-sim`).

pub mod client;
pub mod crawl;
pub mod credential;
pub mod error;
pub mod live;
pub(crate) mod retry;
pub mod scrub;
