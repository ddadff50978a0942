//! The two execution plans job operators run as: [`SourceExec`] (a leaf) and [`TransformExec`]
//! (unary). They give every job operator the same partitioning, metrics and display.

use std::fmt;
use std::sync::Arc;

use datafusion::common::{internal_err, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{Distribution, EquivalenceProperties};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use super::{cancelled, JobProgress, Source, Transform};

/// A [`Source`] as a one-partition leaf plan.
#[derive(Debug)]
pub struct SourceExec<S: Source> {
    /// The work.
    source: Arc<S>,
    /// Where progress goes.
    progress: Arc<dyn JobProgress>,
    /// Execution metrics.
    metrics: ExecutionPlanMetricsSet,
    /// Cached plan properties.
    properties: Arc<PlanProperties>,
}

impl<S: Source> SourceExec<S> {
    /// Runs `source`, reporting to `progress`.
    pub fn new(source: S, progress: Arc<dyn JobProgress>) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(source.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            source: Arc::new(source),
            progress,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        }
    }

    /// The work.
    pub fn source(&self) -> &S {
        &self.source
    }
}

impl<S: Source> DisplayAs for SourceExec<S> {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source.name(), self.source)
    }
}

impl<S: Source> ExecutionPlan for SourceExec<S> {
    fn name(&self) -> &str {
        self.source.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("{} is a leaf", self.source.name())
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!(
                "{} has one partition, asked for {partition}",
                self.source.name()
            );
        }
        let (source, progress) = (self.source.clone(), self.progress.clone());
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let batches = futures::stream::once(async move {
            if progress.is_cancelled() {
                return Err(cancelled());
            }
            let timer = baseline.elapsed_compute().timer();
            let out = source.run(progress).await;
            timer.done();
            if let Ok(batches) = &out {
                baseline.record_output(batches.iter().map(|b| b.num_rows()).sum());
            }
            out.map(|b| futures::stream::iter(b.into_iter().map(Ok)))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            batches,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// A [`Transform`] over its input, partition by partition.
#[derive(Debug)]
pub struct TransformExec<T: Transform> {
    /// The step.
    transform: Arc<T>,
    /// The input plan.
    input: Arc<dyn ExecutionPlan>,
    /// Where progress goes.
    progress: Arc<dyn JobProgress>,
    /// Execution metrics.
    metrics: ExecutionPlanMetricsSet,
    /// Cached plan properties.
    properties: Arc<PlanProperties>,
}

impl<T: Transform> TransformExec<T> {
    /// Applies `transform` to `input`, reporting to `progress`.
    pub fn try_new(
        transform: T,
        input: Arc<dyn ExecutionPlan>,
        progress: Arc<dyn JobProgress>,
    ) -> Result<Self> {
        Self::with_arc(Arc::new(transform), input, progress)
    }

    fn with_arc(
        transform: Arc<T>,
        input: Arc<dyn ExecutionPlan>,
        progress: Arc<dyn JobProgress>,
    ) -> Result<Self> {
        let schema = transform.schema(&input.schema())?;
        let partitions = if transform.single_partition() {
            1
        } else {
            input.output_partitioning().partition_count()
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            transform,
            input,
            progress,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        })
    }

    /// The step.
    pub fn transform(&self) -> &T {
        &self.transform
    }
}

impl<T: Transform> DisplayAs for TransformExec<T> {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.transform.name(), self.transform)
    }
}

impl<T: Transform> ExecutionPlan for TransformExec<T> {
    fn name(&self) -> &str {
        self.transform.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.transform.single_partition() {
            vec![Distribution::SinglePartition]
        } else {
            vec![Distribution::UnspecifiedDistribution]
        }
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("{} takes one child", self.transform.name());
        }
        Ok(Arc::new(Self::with_arc(
            self.transform.clone(),
            children.swap_remove(0),
            self.progress.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition >= self.properties.partitioning.partition_count() {
            return internal_err!("{} has no partition {partition}", self.transform.name());
        }
        let input = if self.transform.single_partition() && self.transform.ordered_input() {
            let plan = self.input.clone();
            let partitions = plan.output_partitioning().partition_count();
            // Partition p + 1 starts only once partition p is drained.
            let streams = futures::stream::iter(0..partitions)
                .map(move |p| plan.execute(p, context.clone()))
                .try_flatten();
            Box::pin(RecordBatchStreamAdapter::new(self.input.schema(), streams))
        } else if self.transform.single_partition() {
            datafusion::physical_plan::execute_stream(self.input.clone(), context)?
        } else {
            self.input.execute(partition, context)?
        };
        let (transform, progress) = (self.transform.clone(), self.progress.clone());
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let applied = {
            let (transform, progress, baseline) =
                (transform.clone(), progress.clone(), baseline.clone());
            input.then(move |batch| {
                let (transform, progress, baseline) =
                    (transform.clone(), progress.clone(), baseline.clone());
                async move {
                    if progress.is_cancelled() {
                        return Err(cancelled());
                    }
                    let timer = baseline.elapsed_compute().timer();
                    let out = transform.apply(batch?, &progress).await;
                    timer.done();
                    out
                }
            })
        };
        let finish = futures::stream::once(async move { transform.finish(&progress).await });
        let stream = applied
            .chain(finish)
            .try_filter_map(|b| futures::future::ready(Ok(b)))
            .inspect_ok(move |b| baseline.record_output(b.num_rows()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}
