//! The memory pool every govlake session runs its queries in: DataFusion's fair spill pool
//! (sorts and aggregations share what joins' build sides leave, and spill past their share;
//! the five largest consumers are named when it runs out), except that a repartition is
//! never made to spill. In DataFusion 55 a `RepartitionExec` refused memory writes the batch
//! to a spill file its reader follows, and when two input tasks spill at once the reader can
//! wait on the older file for a batch that is in the newer one while the writers wait on the
//! reader: every thread parks, and the query neither returns nor fails (apache/datafusion
//! #24883, fixed upstream by #24891, not in 55.2.0). Under a 1.5 GiB limit
//! `remediation_timeliness` at 10M audit events stopped that way after 35 s of work, and a
//! scheduled pack under a limit could wait the same way. So here a repartition's buffers are always granted, and counted: they hold what
//! its outputs have not yet taken (DataFusion's channels are unbounded, and its gate stops
//! the inputs only while every output has a batch waiting), as before DataFusion let them
//! spill. Sorts and aggregations keep their share of what cannot-spill consumers leave; those
//! (hash-join build sides, merges, shared results) find that much less room, and a query that
//! cannot fit fails with the pool's message (exit 2) instead of hanging.

use std::num::NonZeroUsize;
use std::sync::Arc;

use deltalake::datafusion::common::Result;
use deltalake::datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit as PoolLimit, MemoryPool, MemoryReservation,
    TrackConsumersPool,
};

use super::MemoryLimit;

/// A session's pool of `memory` bytes: see the module's documentation.
pub(super) fn pool(memory: MemoryLimit) -> Arc<dyn MemoryPool> {
    Arc::new(RepartitionsNeverSpill(TrackConsumersPool::new(
        FairSpillPool::new(memory.0),
        NonZeroUsize::new(5).expect("non-zero"),
    )))
}

/// The consumer names DataFusion 55 gives a repartition's output buffers
/// (`RepartitionExec[3]`); its order-preserving merges (`RepartitionExec[Merge 3]`) do not
/// spill and are left to the pool.
fn is_repartition_buffer(consumer: &MemoryConsumer) -> bool {
    consumer.can_spill() && consumer.name().starts_with("RepartitionExec[")
}

/// A pool whose repartition buffers always get what they ask for (counted, never refused).
#[derive(Debug)]
struct RepartitionsNeverSpill<P>(P);

impl<P: MemoryPool> MemoryPool for RepartitionsNeverSpill<P> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.0.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.0.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.0.grow(reservation, additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.0.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        if is_repartition_buffer(reservation.consumer()) {
            self.0.grow(reservation, additional);
            return Ok(());
        }
        self.0.try_grow(reservation, additional)
    }

    fn reserved(&self) -> usize {
        self.0.reserved()
    }

    fn memory_limit(&self) -> PoolLimit {
        self.0.memory_limit()
    }
}

impl<P: std::fmt::Display> std::fmt::Display for RepartitionsNeverSpill<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use deltalake::arrow::array::{Array, Int64Array};
    use deltalake::datafusion::error::DataFusionError;
    use deltalake::datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
    use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use deltalake::datafusion::execution::session_state::SessionStateBuilder;
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

    use super::{MemoryLimit, pool};

    /// apache/datafusion #24883's query: a grouped distinct count on two partitions of
    /// 64-row batches under 4 MiB, where a repartition is refused memory again and again.
    /// Returns whether the query finished within 20 s, with the right counts or an error.
    async fn finishes_under(pool: Arc<dyn MemoryPool>) -> bool {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .build_arc()
            .expect("runtime");
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(64);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.sql(
            "CREATE TABLE t AS SELECT v % 13 AS g, md5(CAST(v % 337 AS VARCHAR)) AS trace_id \
             FROM generate_series(1, 40000) AS s(v)",
        )
        .await
        .expect("plan")
        .collect()
        .await
        .expect("table");
        let query = async {
            let frame = ctx
                .sql("SELECT g, count(DISTINCT trace_id) AS n FROM t GROUP BY g")
                .await?;
            frame.collect().await
        };
        match tokio::time::timeout(Duration::from_secs(20), query).await {
            Ok(Ok(batches)) => {
                // 13 and 337 are coprime, so each of the 13 groups of 1..=40000 meets every
                // residue mod 337: 337 distinct hashes each.
                let mut counts = Vec::new();
                for batch in &batches {
                    let n = batch
                        .column(1)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .expect("count is Int64");
                    counts.extend(n.iter().map(|v| v.expect("not null")));
                }
                assert_eq!(counts, vec![337; 13], "one count of 337 per group");
                true
            }
            // Running out of memory is an answer (exit code 2 and a message), not a hang;
            // any other error is a failure of the test.
            Ok(Err(e)) => {
                assert!(
                    matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)),
                    "{e}"
                );
                true
            }
            Err(_) => false,
        }
    }

    /// The rule itself: in a pool of 1 KiB a repartition's buffer is granted a MiB and counted;
    /// a sort, which can spill too, and the repartition's merge, which cannot, are refused.
    #[test]
    fn only_a_repartitions_buffers_are_granted_past_the_limit() {
        let pool = pool(MemoryLimit(1 << 10));
        let buffer = MemoryConsumer::new("RepartitionExec[0]")
            .with_can_spill(true)
            .register(&pool);
        buffer
            .try_grow(1 << 20)
            .expect("a repartition's buffer is granted");
        assert_eq!(pool.reserved(), 1 << 20, "and counted");
        let sort = MemoryConsumer::new("ExternalSorter[0]")
            .with_can_spill(true)
            .register(&pool);
        assert!(sort.try_grow(1 << 20).is_err(), "a sort is refused");
        let merge = MemoryConsumer::new("RepartitionExec[Merge 0]").register(&pool);
        assert!(merge.try_grow(1 << 20).is_err(), "a merge is refused");
        drop(buffer);
        assert_eq!(pool.reserved(), 0, "and given back");
    }

    /// Where DataFusion's own pool stops for ever (the upstream issue's first attempt on an
    /// unfixed tree), every attempt under govlake's pool returns.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_whose_repartition_is_refused_memory_returns_instead_of_hanging() {
        for attempt in 0..12 {
            assert!(
                finishes_under(pool(MemoryLimit(4 << 20))).await,
                "attempt {attempt} did not return within 20 s"
            );
        }
    }
}
