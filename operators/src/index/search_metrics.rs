//! [`SearchMetrics`]: what an index search counts while it runs, reported as DataFusion metrics
//! only when they are asked for.
//!
//! DataFusion operators register their metrics (`BaselineMetrics` and any counters) in an
//! `ExecutionPlanMetricsSet` on every `execute`: an allocation, a label list and a lock for each
//! metric, and the clock read for the start time. That is nothing beside a scan, but a search of a
//! loaded index takes ~15 µs, and registering `BaselineMetrics`' five metrics and two counters
//! for each took ~8% of its queries a second (`benchmarks/README.md`). A search counts in plain
//! atomics instead, and [`SearchMetrics::to_metrics_set`] builds the same metrics (names, types,
//! categories) for the rare reader, `EXPLAIN ANALYZE`. The start and end timestamps, which
//! `EXPLAIN ANALYZE` leaves out, are not kept.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::physical_plan::metrics::{
    Count, Metric, MetricCategory, MetricType, MetricValue, MetricsSet, Time,
};

use crate::index::filtered::FilteredPath;

/// The counts of the searches of one plan (it has one partition).
#[derive(Debug, Default)]
pub(crate) struct SearchMetrics {
    elapsed_compute_nanos: AtomicU64,
    output_rows: AtomicUsize,
    output_bytes: AtomicUsize,
    output_batches: AtomicUsize,
    /// Searches the index alone answered, without Lance's scanner (`direct`).
    direct_index_searches: AtomicUsize,
    /// Of those, searches of the index loaded in memory (`loaded`).
    loaded_index_searches: AtomicUsize,
    /// Rows written after the index was built, searched exactly beside the loaded index
    /// (`index_version`), summed over the searches.
    rows_outside_index: AtomicUsize,
    /// Filtered searches of a loaded index that walked the graph (`filtered`).
    filtered_graph_searches: AtomicUsize,
    /// Filtered searches of a loaded index that scored every admitted row.
    filtered_exact_searches: AtomicUsize,
}

/// The partition the metrics are reported for.
const PARTITION: usize = 0;

impl SearchMetrics {
    /// Adds the time since `start` to the compute time.
    pub(crate) fn add_elapsed_compute(&self, start: Instant) {
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_compute_nanos
            .fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts `batch` as output: its rows, and the bytes of its arrays' buffers
    /// (`get_array_memory_size`; DataFusion's own count, which also finds buffers shared between
    /// arrays, took ~1% of a search of a loaded index, and the arrays of a search's output
    /// share none).
    pub(crate) fn record_output(&self, batch: &RecordBatch) {
        self.output_rows
            .fetch_add(batch.num_rows(), Ordering::Relaxed);
        self.output_bytes
            .fetch_add(batch.get_array_memory_size(), Ordering::Relaxed);
        self.output_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a search the index alone answered; `loaded` where it was searched loaded.
    pub(crate) fn record_direct_search(&self, loaded: bool) {
        self.direct_index_searches.fetch_add(1, Ordering::Relaxed);
        if loaded {
            self.loaded_index_searches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts `rows` searched exactly beside a loaded index.
    pub(crate) fn record_rows_outside_index(&self, rows: usize) {
        self.rows_outside_index.fetch_add(rows, Ordering::Relaxed);
    }

    /// Counts a filtered search of a loaded index that went `path`.
    pub(crate) fn record_filtered_search(&self, path: FilteredPath) {
        let counter = match path {
            FilteredPath::Graph => &self.filtered_graph_searches,
            FilteredPath::Exact => &self.filtered_exact_searches,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts as the metrics `BaselineMetrics` and the path counters would have
    /// registered.
    pub(crate) fn to_metrics_set(&self) -> MetricsSet {
        let count = |value: &AtomicUsize| {
            let count = Count::new();
            count.add(value.load(Ordering::Relaxed));
            count
        };
        let elapsed_compute = Time::new();
        elapsed_compute.add_duration(Duration::from_nanos(
            self.elapsed_compute_nanos.load(Ordering::Relaxed),
        ));
        let metrics = [
            (
                MetricValue::ElapsedCompute(elapsed_compute),
                MetricType::Summary,
                Some(MetricCategory::Timing),
            ),
            (
                MetricValue::OutputRows(count(&self.output_rows)),
                MetricType::Summary,
                Some(MetricCategory::Rows),
            ),
            (
                MetricValue::OutputBytes(count(&self.output_bytes)),
                MetricType::Summary,
                Some(MetricCategory::Bytes),
            ),
            (
                MetricValue::OutputBatches(count(&self.output_batches)),
                MetricType::Dev,
                Some(MetricCategory::Rows),
            ),
        ];
        let counters = [
            ("direct_index_searches", &self.direct_index_searches),
            ("loaded_index_searches", &self.loaded_index_searches),
            ("rows_outside_index", &self.rows_outside_index),
            ("filtered_graph_searches", &self.filtered_graph_searches),
            ("filtered_exact_searches", &self.filtered_exact_searches),
        ]
        .map(|(name, value)| {
            let value = MetricValue::Count {
                name: Cow::Borrowed(name),
                count: count(value),
            };
            (value, MetricType::Dev, None)
        });
        let mut set = MetricsSet::new();
        for (value, metric_type, category) in metrics.into_iter().chain(counters) {
            let mut metric = Metric::new(value, Some(PARTITION)).with_type(metric_type);
            if let Some(category) = category {
                metric = metric.with_category(category);
            }
            set.push(Arc::new(metric));
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;

    use super::*;

    #[test]
    fn the_counts_are_reported_as_the_baseline_metrics_and_the_path_counters() {
        let metrics = SearchMetrics::default();
        let batch =
            RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)])
                .unwrap();
        metrics.record_output(&batch);
        metrics.record_output(&batch.slice(0, 1));
        metrics.record_direct_search(true);
        metrics.record_direct_search(false);
        metrics.record_rows_outside_index(5);
        metrics.record_rows_outside_index(2);
        metrics.record_filtered_search(FilteredPath::Exact);
        metrics.record_filtered_search(FilteredPath::Graph);
        metrics.record_filtered_search(FilteredPath::Graph);
        metrics.add_elapsed_compute(Instant::now() - Duration::from_millis(3));
        let set = metrics.to_metrics_set();
        assert_eq!(set.output_rows(), Some(4));
        assert!(set.elapsed_compute().is_some_and(|ns| ns >= 3_000_000));
        let value = |name: &str| set.sum(|m| m.value().name() == name).map(|v| v.as_usize());
        assert_eq!(value("output_batches"), Some(2));
        assert_eq!(
            value("output_bytes"),
            Some(batch.get_array_memory_size() + batch.slice(0, 1).get_array_memory_size())
        );
        assert_eq!(value("direct_index_searches"), Some(2));
        assert_eq!(value("loaded_index_searches"), Some(1));
        assert_eq!(value("rows_outside_index"), Some(7));
        assert_eq!(value("filtered_graph_searches"), Some(2));
        assert_eq!(value("filtered_exact_searches"), Some(1));
        for metric in set.iter() {
            assert_eq!(metric.partition(), Some(PARTITION));
        }
        // As `BaselineMetrics` and `MetricBuilder::counter` register them.
        let kind = |name: &str| {
            let metric = set.iter().find(|m| m.value().name() == name).unwrap();
            (metric.metric_type(), metric.metric_category())
        };
        let (summary, dev) = (MetricType::Summary, MetricType::Dev);
        assert_eq!(kind("output_rows"), (summary, Some(MetricCategory::Rows)));
        assert_eq!(
            kind("elapsed_compute"),
            (summary, Some(MetricCategory::Timing))
        );
        assert_eq!(kind("output_bytes"), (summary, Some(MetricCategory::Bytes)));
        assert_eq!(kind("output_batches"), (dev, Some(MetricCategory::Rows)));
        assert_eq!(kind("direct_index_searches"), (dev, None));
    }
}
