//! govlake turns Microsoft Entra ID Governance (Entitlement Management) history into evidence
//! an examiner accepts.
//!
//! The pipeline runs one way: [`ingest`] reads Graph exports into typed rows ([`graph`]
//! fetches them live), [`lake`] keeps
//! them as Delta tables on object storage with history and bookkeeping, [`query`] reads the
//! lake with DataFusion, and [`report`] renders auditor reports and signed evidence packs; [`notify`] tells people
//! what changed.
//! [`generate`] writes synthetic tenants (the sample tenant and large
//! ones for benchmarks) in export-directory form. [`upgrade`] migrates a lake written by an
//! older govlake and rebuilds typed tables from the raw layer.
#![warn(missing_docs)]

pub mod catalog;
pub mod config;
pub mod generate;
pub mod graph;
pub mod ingest;
pub mod lake;
pub mod notify;
pub mod query;
pub mod report;
pub mod suggest;
pub mod time;
pub mod upgrade;
