//! The memory pool every govlake session runs its queries in: DataFusion's fair spill pool
//! (sorts and aggregations share what joins' build sides leave, and spill past their share;
//! the five largest consumers are named when it runs out), with each sort's reservation also
//! held to [`MOST_BEFORE_SPILLING`] ([`MOST_BEFORE_SPILLING_WHOLE_RESULTS`] in a pack). The fair pool alone gives a spilling operator the whole
//! pool over the number of spilling operators, so under the default limit (half the
//! machine's memory) the sorts of a 10M-event view held gigabytes they could have spilled.
//! Only sorts (`ExternalSorter`) are held to it: they spill whenever refused. Aggregations
//! also register as able to spill, but in DataFusion 55 some cannot when refused (an ordered
//! final aggregation; a hash aggregation after its first spill) and would fail the query;
//! repartition buffers that spill can deadlock (apache/datafusion #24883).
//!
//! The pool also remembers its peak: when a session ends, `-v` logs the most it held and
//! its five largest consumers at about that moment (listed just after the peak is seen, so
//! a consumer may have moved a little), which tells which operator to look at when a view
//! holds too much.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use deltalake::datafusion::common::{DataFusionError, Result};
use deltalake::datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryLimit as PoolLimit, MemoryPool, MemoryReservation,
    TrackConsumersPool,
};

use super::MemoryLimit;

/// The most one sort's reservation holds before it spills, whatever the pool's size, in a
/// session that answers queries (a pack's: [`MOST_BEFORE_SPILLING_WHOLE_RESULTS`]). At
/// 10M audit events (one run each; without the cap by hand, with it in the suite):
/// `approval_trail` 4,559 -> 3,167 MiB, the pack 4,526 -> 3,692 MiB, but the pack then
/// writes 18,171 MiB instead of 13,978 (bench/ANALYSIS.md, session 33, also has the figures
/// of a cap on aggregations too, taken back because some of them cannot spill).
pub const MOST_BEFORE_SPILLING: usize = 128 << 20;

/// The most one sort's reservation holds before it spills in a session that writes whole
/// results to files (the evidence pack), whose spill files are written in zstd rather than
/// LZ4 (`query::session_for_whole_results`) so that the disk it writes stays under twice
/// the pack's size. Session 34 chose 1 GiB for the disk (with [`MOST_BEFORE_SPILLING`] and
/// LZ4 the 10M pack wrote 2.4x its own size); once the package reports no longer held
/// their sections' whole results (session 37), those 1 GiB sorts made the pack's peak. At
/// 10M audit events (one run each, bench/ANALYSIS.md, session 37): 1 GiB and LZ4 3,095
/// MiB, 1.80x written; 256 MiB and LZ4 2,469 MiB, 2.22x; 256 MiB and zstd, with the trend
/// section's checkpoints run one after another, 1,867 MiB, 1.91x (zstd's share of the
/// disk saved was not measured apart).
pub const MOST_BEFORE_SPILLING_WHOLE_RESULTS: usize = 256 << 20;

/// The most spill files one pass of a sort's merge reads at once (more are merged in
/// several passes, each writing its output to a new spill file). DataFusion 55 merges every
/// spill file of a sort in one pass when the pool allows, holding a batch or two of each:
/// `approval_trail`'s final sort at 10M audit events (10.3M wide rows, about 16 spill files
/// a partition at [`MOST_BEFORE_SPILLING`]) held 980 MB a partition that way, the view's
/// peak. With 8: 2,364 -> 1,725 MiB, 35.4 -> 36.9 s, 3.7 -> 6.0 GB written to the
/// temporary folder (with 4: 1,749 MiB, 43.1 s, 8.4 GB; one run each, bench/ANALYSIS.md,
/// session 35). A pack's sorts hold [`MOST_BEFORE_SPILLING_WHOLE_RESULTS`], twice as much,
/// so the same sort leaves about half as many files, about the fan-in.
pub(super) const SPILL_MERGE_FAN_IN: usize = 8;

/// A session's pool of `memory` bytes: see the module's documentation.
pub(super) fn pool(memory: MemoryLimit) -> Arc<dyn MemoryPool> {
    pool_holding(memory, MOST_BEFORE_SPILLING)
}

/// [`pool`] for a session that writes whole results to files: each sort holds up to
/// [`MOST_BEFORE_SPILLING_WHOLE_RESULTS`].
pub(super) fn pool_for_whole_results(memory: MemoryLimit) -> Arc<dyn MemoryPool> {
    pool_holding(memory, MOST_BEFORE_SPILLING_WHOLE_RESULTS)
}

/// [`pool`], with each sort held to `most` bytes.
fn pool_holding(memory: MemoryLimit, most: usize) -> Arc<dyn MemoryPool> {
    Arc::new(capped_pool(memory, most))
}

fn capped_pool(memory: MemoryLimit, most: usize) -> SortsCapped {
    SortsCapped {
        pool: TrackConsumersPool::new(
            FairSpillPool::new(memory.0),
            NonZeroUsize::new(5).expect("non-zero"),
        ),
        most,
        peak: AtomicUsize::new(0),
        at_peak: Mutex::new(String::new()),
    }
}

/// How much more than the last peak the pool must hold before its consumers are listed
/// again (listing them sorts every consumer of the session).
const PEAK_STEP: usize = 16 << 20;

/// Whether `consumer` is a sort's in-memory buffer (DataFusion 55 names it
/// `ExternalSorter[3]`; its merge, `ExternalSorterMerge[3]`, cannot spill).
fn is_sort_buffer(consumer: &MemoryConsumer) -> bool {
    consumer.can_spill() && consumer.name().starts_with("ExternalSorter[")
}

/// A pool in which a sort's buffer is refused past `most` bytes (so it spills), unless it
/// holds nothing yet (one batch larger than `most` must still be sorted); everything else
/// is as `pool` decides.
#[derive(Debug)]
struct SortsCapped {
    pool: TrackConsumersPool<FairSpillPool>,
    most: usize,
    /// The most the pool has held (to within [`PEAK_STEP`]), and its largest consumers then.
    peak: AtomicUsize,
    at_peak: Mutex<String>,
}

impl SortsCapped {
    /// Notes a new peak of the pool's reservations.
    fn note_peak(&self) {
        let now = self.pool.reserved();
        if now < self.peak.load(Ordering::Relaxed) + PEAK_STEP {
            return;
        }
        let top = self.pool.report_top(5);
        let mut at_peak = self.at_peak.lock().unwrap_or_else(|e| e.into_inner());
        if now >= self.peak.load(Ordering::Relaxed) + PEAK_STEP {
            self.peak.store(now, Ordering::Relaxed);
            *at_peak = top;
        }
    }

    /// The most the pool has held, and its largest consumers then.
    fn peak(&self) -> (usize, String) {
        let at_peak = self.at_peak.lock().unwrap_or_else(|e| e.into_inner());
        (self.peak.load(Ordering::Relaxed), at_peak.clone())
    }
}

impl Drop for SortsCapped {
    fn drop(&mut self) {
        let (peak, at_peak) = self.peak();
        if peak > 0 {
            tracing::debug!(
                peak_bytes = peak,
                sort_holds_at_most = self.most,
                "The query memory pool's peak; its largest consumers then:\n{at_peak}"
            );
        }
    }
}

impl std::fmt::Display for SortsCapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (a sort at most {} bytes before it spills)",
            self.pool, self.most
        )
    }
}

impl MemoryPool for SortsCapped {
    fn name(&self) -> &str {
        self.pool.name()
    }

    fn register(&self, consumer: &MemoryConsumer) {
        self.pool.register(consumer);
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        self.pool.unregister(consumer);
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.pool.grow(reservation, additional);
        self.note_peak();
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.pool.shrink(reservation, shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let consumer = reservation.consumer();
        if is_sort_buffer(consumer)
            && reservation.size() > 0
            && reservation.size() + additional > self.most
        {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{} holds {} bytes and asked for {additional} more: past the {} a sort may hold",
                consumer.name(),
                reservation.size(),
                self.most
            )));
        }
        self.pool.try_grow(reservation, additional)?;
        self.note_peak();
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.pool.reserved()
    }

    fn memory_limit(&self) -> PoolLimit {
        self.pool.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::datasource::MemTable;
    use deltalake::datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
    use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use deltalake::datafusion::execution::session_state::SessionStateBuilder;
    use deltalake::datafusion::prelude::{SessionConfig, SessionContext};

    use super::{
        MOST_BEFORE_SPILLING, MOST_BEFORE_SPILLING_WHOLE_RESULTS, MemoryLimit, PEAK_STEP,
        capped_pool, pool, pool_for_whole_results, pool_holding,
    };

    const MOST: usize = 1 << 20;

    /// Whether `consumer`, holding nothing, gets `bytes` and then `bytes` more from `pool`.
    fn granted_in(pool: Arc<dyn MemoryPool>, consumer: MemoryConsumer, bytes: usize) -> bool {
        let held = consumer.register(&pool);
        held.try_grow(bytes).is_ok() && held.try_grow(bytes).is_ok()
    }

    /// [`granted_in`] a 1 GiB pool whose sorts hold at most 1 MiB.
    fn granted(consumer: MemoryConsumer, bytes: usize) -> bool {
        granted_in(pool_holding(MemoryLimit(1 << 30), MOST), consumer, bytes)
    }

    #[test]
    fn only_sorts_are_held_to_the_most_before_spilling() {
        let pool: Arc<dyn MemoryPool> = pool_holding(MemoryLimit(1 << 30), MOST);
        let sort = MemoryConsumer::new("ExternalSorter[0]")
            .with_can_spill(true)
            .register(&pool);
        // Its first request whatever its size, then up to the most.
        assert!(sort.try_grow(2 * MOST).is_ok());
        sort.shrink(MOST + 10);
        assert!(sort.try_grow(10).is_ok());
        assert!(sort.try_grow(1).is_err());
        // Aggregations (some cannot spill when refused), repartition buffers (a spilling
        // repartition can deadlock) and what cannot spill: the fair pool's rules.
        for name in [
            "GroupedHashAggregateStream[1]",
            "OrderedFinalAggregateStream[0]",
            "RepartitionExec[0]",
        ] {
            let spilling = MemoryConsumer::new(name).with_can_spill(true);
            assert!(granted(spilling, 64 * MOST), "{name}");
        }
        assert!(granted(MemoryConsumer::new("HashJoinInput"), 64 * MOST));
        assert!(granted(
            MemoryConsumer::new("ExternalSorterMerge[0]"),
            64 * MOST
        ));
        let sort = MemoryConsumer::new("ExternalSorter[2]").with_can_spill(true);
        assert!(!granted(sort, 64 * MOST));
    }

    #[test]
    fn a_sort_writing_whole_results_holds_more_before_it_spills() {
        let reserve_twice = |pool: Arc<dyn MemoryPool>, bytes: usize| {
            granted_in(
                pool,
                MemoryConsumer::new("ExternalSorter[0]").with_can_spill(true),
                bytes,
            )
        };
        let memory = MemoryLimit(8 << 30);
        let half_past_queries = MOST_BEFORE_SPILLING / 2 + 1;
        assert!(!reserve_twice(pool(memory), half_past_queries));
        assert!(reserve_twice(
            pool_for_whole_results(memory),
            half_past_queries
        ));
        let half_past_whole = MOST_BEFORE_SPILLING_WHOLE_RESULTS / 2 + 1;
        assert!(!reserve_twice(
            pool_for_whole_results(memory),
            half_past_whole
        ));
    }

    #[test]
    fn the_pool_remembers_its_peak_and_who_held_it() {
        let capped = Arc::new(capped_pool(MemoryLimit(1 << 30), MOST));
        let pool: Arc<dyn MemoryPool> = capped.clone();
        // Through grow (what cannot spill): 3 steps.
        let join = MemoryConsumer::new("HashJoinInput").register(&pool);
        join.grow(PEAK_STEP * 3);
        assert_eq!(capped.peak().0, PEAK_STEP * 3);
        // Through try_grow: 4 steps with the sort, the join still among the largest.
        let sort = MemoryConsumer::new("ExternalSorter[0]")
            .with_can_spill(true)
            .register(&pool);
        sort.try_grow(PEAK_STEP).expect("its first request");
        let (peak, at_peak) = capped.peak();
        assert_eq!(peak, PEAK_STEP * 4);
        assert!(at_peak.contains("HashJoinInput"), "{at_peak}");
        assert!(at_peak.contains("ExternalSorter[0]"), "{at_peak}");
        // The join lets go; the sort alone (grow) passes the peak: listed without the join.
        drop(join);
        sort.grow(PEAK_STEP * 4);
        let (peak, at_peak) = capped.peak();
        assert_eq!(peak, PEAK_STEP * 5);
        assert!(!at_peak.contains("HashJoinInput"), "{at_peak}");
    }

    /// Medians of two groups of 500,000 values each (their states several MiB each, past
    /// the 1 MiB a sort may hold) are computed, not refused.
    #[tokio::test]
    async fn an_aggregation_past_the_most_is_not_refused() {
        let ctx = capped_session(1_000_000);
        let rows = collect(
            &ctx,
            "SELECT k, median(v) AS m FROM (SELECT v % 2 AS k, v FROM t) GROUP BY k ORDER BY k",
        )
        .await;
        let text = deltalake::arrow::util::pretty::pretty_format_batches(&rows)
            .expect("prints")
            .to_string();
        assert!(text.contains("| 0 | 499999.0 |"), "{text}");
        assert!(text.contains("| 1 | 500000.0 |"), "{text}");
    }

    async fn collect(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
        ctx.sql(sql)
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs")
    }

    /// A session whose pool holds 1 GiB and each sort 1 MiB, with `t(v)`: 0..n in a
    /// scrambled order, in batches of 8,192.
    fn capped_session(n: i64) -> SessionContext {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool_holding(MemoryLimit(1 << 30), MOST))
            .build_arc()
            .expect("runtime");
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(SessionConfig::new().with_target_partitions(1))
            .with_runtime_env(runtime)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let batches: Vec<RecordBatch> = (0..n)
            .step_by(8192)
            .map(|start| {
                let values = (start..(start + 8192).min(n)).map(|i| (i * 7_919) % n);
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(Int64Array::from_iter_values(values))],
                )
                .expect("batch")
            })
            .collect();
        let table = MemTable::try_new(schema, vec![batches]).expect("table");
        ctx.register_table("t", Arc::new(table)).expect("t");
        ctx
    }

    /// A sort of 1M integers (8 MB in batches of 8,192) in a 1 GiB pool: held to 1 MiB, it
    /// spills, and its rows come out in order.
    #[tokio::test]
    async fn a_sort_past_the_most_spills_and_sorts() {
        let n = 1_000_000i64;
        let ctx = capped_session(n);
        let plan = collect(&ctx, "EXPLAIN ANALYZE SELECT v FROM t ORDER BY v").await;
        let text = deltalake::arrow::util::pretty::pretty_format_batches(&plan)
            .expect("prints")
            .to_string();
        let spills = text
            .split("spill_count=")
            .nth(1)
            .and_then(|rest| rest.split([',', ']']).next())
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no spill count: {text}"));
        assert!(spills > 0, "{text}");
        let sorted = collect(&ctx, "SELECT v FROM t ORDER BY v").await;
        let got: Vec<i64> = sorted
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("int64")
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    }
}
