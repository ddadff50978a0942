//! Jobs: restores, garbage collections and index optimisations run as DataFusion plans by a
//! scheduler.
//!
//! [`JobScheduler`] records a job PENDING, runs it when one of its slots is free (a concurrency
//! limit), marks it RUNNING with its owner and a heartbeat, executes the job's plan
//! ([`restore`], [`gc`], [`optimize`]) and records SUCCEEDED, FAILED (with the reason) or CANCELLED. Progress
//! goes to the job record at most every `progress_interval`, and only forward.
//!
//! Restart safety: [`JobScheduler::recover`] (run by the server at start, then every half lease)
//! takes every PENDING job and every RUNNING job whose heartbeat is older than the lease — its
//! runner died — and runs it again. A job is claimed in the commit that checks it is still free,
//! so of several schedulers over one root exactly one runs it. Jobs are idempotent: a restore
//! first clears any half-made target; garbage collection recomputes what to delete; an index
//! optimisation finds again what is behind. No job is
//! left RUNNING forever or lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use quiver_catalog::{Catalog, JobKind, JobRecord, JobState};
use quiver_operators::jobs::JobProgress;
use tokio::sync::{Notify, Semaphore};

use crate::error::external;

pub mod gc;
mod gc_records;
pub mod optimize;
pub mod restore;

/// Scheduler settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Jobs running at once.
    pub max_concurrent: usize,
    /// A RUNNING job whose heartbeat is older than this has lost its runner.
    pub lease: Duration,
    /// How often progress (and the heartbeat) is written to the job record.
    pub progress_interval: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            lease: Duration::from_secs(60),
            progress_interval: Duration::from_millis(500),
        }
    }
}

/// A running job's live state: counters, cancellation.
#[derive(Debug, Default)]
pub struct JobHandle {
    cancelled: AtomicBool,
    files_total: AtomicU64,
    bytes_total: AtomicU64,
    rows_total: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    rows_done: AtomicU64,
}

impl JobHandle {
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Copies the counters into `job`, with progress from bytes (or files) done.
    fn report(&self, job: &mut JobRecord) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        job.files_total = load(&self.files_total);
        job.bytes_total = load(&self.bytes_total);
        job.rows_total = load(&self.rows_total);
        job.files_done = load(&self.files_done);
        job.bytes_done = load(&self.bytes_done);
        job.rows_done = load(&self.rows_done);
        let fraction = if job.bytes_total > 0 {
            job.bytes_done as f64 / job.bytes_total as f64
        } else if job.files_total > 0 {
            job.files_done as f64 / job.files_total as f64
        } else {
            0.0
        };
        // 100 is reserved for success.
        job.progress = ((fraction * 100.0) as u8).min(99);
        job.heartbeat_at = Some(Utc::now());
    }
}

impl JobProgress for JobHandle {
    fn add_total(&self, files: u64, bytes: u64, rows: u64) {
        self.files_total.fetch_add(files, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
        self.rows_total.fetch_add(rows, Ordering::Relaxed);
    }

    fn add_done(&self, files: u64, bytes: u64, rows: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        self.rows_done.fetch_add(rows, Ordering::Relaxed);
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// A job's plan and what to do when it ends.
pub struct JobPlan {
    /// The plan to execute.
    pub plan: Arc<dyn ExecutionPlan>,
    /// Undoes partial work after a failure or cancellation.
    pub rollback: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

/// Result batches as a JSON array of row objects.
fn rows_as_json(batches: &[RecordBatch]) -> serde_json::Value {
    let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
    let batches: Vec<&RecordBatch> = batches.iter().collect();
    let written = writer.write_batches(&batches).and_then(|_| writer.finish());
    match written {
        Ok(()) => serde_json::from_slice(&writer.into_inner()).unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

/// Runs jobs.
#[derive(Debug)]
pub struct JobScheduler {
    catalog: Arc<Catalog>,
    owner: String,
    config: SchedulerConfig,
    slots: Arc<Semaphore>,
    running: Mutex<HashMap<u64, Arc<JobHandle>>>,
    finished: Notify,
    task_ctx: Arc<TaskContext>,
}

impl JobScheduler {
    /// A scheduler for `catalog`'s jobs.
    pub fn new(catalog: Arc<Catalog>, config: SchedulerConfig) -> Arc<Self> {
        Arc::new(Self {
            catalog,
            owner: uuid::Uuid::new_v4().simple().to_string(),
            slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            config,
            running: Mutex::new(HashMap::new()),
            finished: Notify::new(),
            task_ctx: SessionContext::new().task_ctx(),
        })
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The scheduler's settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Records a PENDING job and starts it in the background.
    pub async fn submit(
        self: &Arc<Self>,
        kind: JobKind,
        target: String,
        spec: serde_json::Value,
    ) -> Result<JobRecord> {
        let job = self
            .catalog
            .submit_job(kind, target, spec)
            .await
            .map_err(external)?;
        self.spawn(job.clone());
        Ok(job)
    }

    /// Records a PENDING job and starts it, unless a job of the same kind on the same target is
    /// pending or running (`None` then).
    pub async fn submit_unless_active(
        self: &Arc<Self>,
        kind: JobKind,
        target: String,
        spec: serde_json::Value,
    ) -> Result<Option<JobRecord>> {
        let job = self
            .catalog
            .submit_job_unless_active(kind, target, spec)
            .await
            .map_err(external)?;
        if let Some(job) = &job {
            self.spawn(job.clone());
        }
        Ok(job)
    }

    fn spawn(self: &Arc<Self>, job: JobRecord) {
        let handle = Arc::new(JobHandle::default());
        if let Ok(mut running) = self.running.lock() {
            running.insert(job.id, handle.clone());
        }
        let scheduler = self.clone();
        tokio::spawn(async move {
            scheduler.run(job, handle).await;
        });
    }

    /// Takes over PENDING jobs and RUNNING jobs whose runner stopped reporting; returns their ids.
    pub async fn recover(self: &Arc<Self>) -> Result<Vec<u64>> {
        let lease =
            chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::zero());
        let now = Utc::now();
        let mut taken = Vec::new();
        for job in self.catalog.jobs().await.map_err(external)? {
            let orphaned = match job.state {
                JobState::Pending => true,
                JobState::Running => {
                    job.owner.as_deref() != Some(self.owner.as_str())
                        && lease_expired(&job, now, lease)
                }
                _ => false,
            };
            let mine = self
                .running
                .lock()
                .map(|r| r.contains_key(&job.id))
                .unwrap_or(false);
            if orphaned && !mine {
                taken.push(job.id);
                self.spawn(job);
            }
        }
        Ok(taken)
    }

    /// Calls [`JobScheduler::recover`] every `every` until the process ends, so that a job
    /// whose runner died (another server over the same root, or this one before a restart that
    /// came within the lease) is taken over once its lease expires.
    pub fn start_recovery(self: &Arc<Self>, every: Duration) {
        let scheduler = self.clone();
        spawn_every(every, move || {
            let scheduler = scheduler.clone();
            async move {
                match scheduler.recover().await {
                    Ok(taken) if !taken.is_empty() => {
                        tracing::info!("took over unfinished jobs {taken:?}")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("job recovery failed: {e}"),
                }
            }
        });
    }

    /// Runs garbage collection every `every`, with `spec`, until the process ends. A run is
    /// skipped while an earlier garbage collection (scheduled or on demand) is still pending or
    /// running, so slow runs never pile up.
    pub fn start_interval_gc(self: &Arc<Self>, every: Duration, spec: gc::GcSpec) {
        let scheduler = self.clone();
        spawn_every(every, move || {
            let (scheduler, spec) = (scheduler.clone(), spec.clone());
            async move {
                match scheduler.catalog.jobs().await {
                    Ok(jobs)
                        if jobs
                            .iter()
                            .any(|j| j.kind == JobKind::Gc && !j.state.is_terminal()) =>
                    {
                        tracing::debug!("garbage collection still running; skipping this round")
                    }
                    Ok(_) => {
                        if let Err(e) = gc::submit(&scheduler, spec).await {
                            tracing::warn!("scheduled garbage collection could not start: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("scheduled garbage collection could not start: {e}"),
                }
            }
        });
    }

    /// Asks job `id` to stop.
    pub async fn cancel(&self, id: u64) -> Result<JobRecord> {
        let job = self.catalog.request_cancel(id).await.map_err(external)?;
        if let Some(handle) = self.handle(id) {
            handle.cancel();
        }
        Ok(job)
    }

    fn handle(&self, id: u64) -> Option<Arc<JobHandle>> {
        self.running.lock().ok().and_then(|r| r.get(&id).cloned())
    }

    /// Waits until job `id` has finished; returns its final record.
    pub async fn wait(&self, id: u64) -> Result<JobRecord> {
        loop {
            let notified = self.finished.notified();
            let job = self.catalog.job(id).await.map_err(external)?;
            if job.state.is_terminal() {
                return Ok(job);
            }
            let _ = tokio::time::timeout(self.config.progress_interval, notified).await;
        }
    }

    async fn run(self: Arc<Self>, job: JobRecord, handle: Arc<JobHandle>) {
        let id = job.id;
        let outcome = self.clone().run_to_end(job, handle.clone()).await;
        if let Err(e) = outcome {
            tracing::warn!("job {id} could not record its outcome: {e}");
        }
        if let Ok(mut running) = self.running.lock() {
            running.remove(&id);
        }
        self.finished.notify_waiters();
    }

    async fn run_to_end(self: Arc<Self>, job: JobRecord, handle: Arc<JobHandle>) -> Result<()> {
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| DataFusionError::Execution(e.to_string()))?;
        let owner = self.owner.clone();
        let lease =
            chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::zero());
        // Claimed in the same commit that checks it is still free: of several schedulers that
        // recover one job at once, exactly one runs it.
        let started = self
            .catalog
            .update_job(job.id, |j| {
                let free = match j.state {
                    JobState::Pending => true,
                    JobState::Running => {
                        j.owner.as_deref() == Some(owner.as_str())
                            || lease_expired(j, Utc::now(), lease)
                    }
                    _ => false,
                };
                if j.cancel_requested || !free {
                    return;
                }
                j.state = JobState::Running;
                j.owner = Some(owner.clone());
                j.started_at = Some(Utc::now());
                j.heartbeat_at = Some(Utc::now());
            })
            .await
            .map_err(external)?;
        if started.state != JobState::Running || started.owner.as_deref() != Some(&owner) {
            return Ok(());
        }
        let reporter = self.report_progress(job.id, handle.clone());
        let result = self.execute(&started, handle.clone()).await;
        reporter.abort();
        let cancelled = handle.is_cancelled();
        self.catalog
            .update_job(job.id, |j| {
                handle.report(j);
                j.finished_at = Some(Utc::now());
                match &result {
                    Ok(()) => {
                        j.state = JobState::Succeeded;
                        j.progress = 100;
                    }
                    Err(_) if cancelled => {
                        j.state = JobState::Cancelled;
                        j.error = Some("cancelled on request".to_string());
                    }
                    Err(e) => {
                        j.state = JobState::Failed;
                        j.error = Some(crate::error::user_message(e));
                    }
                }
            })
            .await
            .map_err(external)?;
        Ok(())
    }

    /// Builds and runs the job's plan, rolling back on failure.
    async fn execute(&self, job: &JobRecord, handle: Arc<JobHandle>) -> Result<()> {
        let progress: Arc<dyn JobProgress> = handle;
        let planned = match job.kind {
            JobKind::Restore => restore::plan(&self.catalog, job, progress).await?,
            JobKind::Gc => gc::plan(&self.catalog, job, progress).await?,
            JobKind::Optimize => optimize::plan(&self.catalog, job, progress).await?,
        };
        match collect(planned.plan, self.task_ctx.clone()).await {
            Ok(batches) => {
                self.record_result(job.id, &batches).await;
                Ok(())
            }
            Err(e) => {
                if let Some(rollback) = planned.rollback {
                    rollback.await;
                }
                Err(e)
            }
        }
    }

    /// Keeps the job's result rows (the garbage collection report, the restore summary) in its
    /// record, for `SHOW JOBS` and `VACUUM`.
    async fn record_result(&self, id: u64, batches: &[RecordBatch]) {
        let rows = rows_as_json(batches);
        let _ = self
            .catalog
            .update_job(id, |j| j.result = Some(rows.clone()))
            .await;
    }

    /// Writes progress and the heartbeat every `progress_interval`, and picks up cancellation
    /// requested through the catalog (e.g. by another server).
    fn report_progress(&self, id: u64, handle: Arc<JobHandle>) -> tokio::task::JoinHandle<()> {
        let catalog = self.catalog.clone();
        let every = self.config.progress_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                match catalog.update_job(id, |j| handle.report(j)).await {
                    Ok(job) if job.cancel_requested => handle.cancel(),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("job {id}: progress not recorded: {e}"),
                }
            }
        })
    }
}

/// Runs `tick` every `every` (first after one interval) until the process ends.
fn spawn_every<F, Fut>(every: Duration, mut tick: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            tick().await;
        }
    });
}

/// Whether a RUNNING job's runner has not reported within `lease` (or never did).
fn lease_expired(job: &JobRecord, now: chrono::DateTime<Utc>, lease: chrono::Duration) -> bool {
    job.heartbeat_at.is_none_or(|h| now - h >= lease)
}
