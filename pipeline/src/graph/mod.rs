//! Stage 1, live source: Microsoft Graph. `credential` says how the app signs in, `client`
//! fetches tokens and pages safely under throttling and faults (`retry` holds the retry
//! rules as one pure function; `scrub` keeps secrets out of the server answers its errors
//! show; `error` is what can go wrong), `crawl` lists every collection (incrementally for
//! audit events) into a spool folder that the file ingest then reads (`live` plans a run
//! from the lake's watermarks and runs fetch-then-ingest), and `sim` is the Graph
//! simulator (`govlake-graph-sim`) that tests, demos and benchmarks run against on 127.0.0.1.

pub mod client;
pub mod crawl;
pub mod credential;
pub mod error;
pub mod live;
pub(crate) mod retry;
pub mod scrub;
pub mod sim;
