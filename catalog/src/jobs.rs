//! Job records: restore and garbage collection runs that users follow.
//!
//! A job's record moves `PENDING -> RUNNING -> SUCCEEDED | FAILED | CANCELLED`; terminal states
//! never change again, and progress never goes backwards (an update that would lower it keeps the
//! higher value). The runner identifies itself (`owner`) and reports a heartbeat; a scheduler that
//! finds a RUNNING job whose heartbeat is older than its lease takes it over or fails it — a job is
//! never left RUNNING forever. Records of finished jobs are kept for a retention period and then
//! removed by garbage collection ([`Catalog::expire_jobs`]), so the catalog does not grow with
//! every scheduled run.

use chrono::{DateTime, Utc};

use crate::catalog::Catalog;
use crate::error::{CatalogError, Result};
use crate::model::{CatalogState, JobKind, JobRecord, JobState};

impl Catalog {
    /// Records a new PENDING job.
    pub async fn submit_job(
        &self,
        kind: JobKind,
        target: String,
        spec: serde_json::Value,
    ) -> Result<JobRecord> {
        self.commit(|state| Ok(new_job(state, kind, &target, &spec)))
            .await
    }

    /// Records a new PENDING job, unless a job of the same kind on the same target is pending
    /// or running: checked in the same commit, so of several servers asking at once exactly one
    /// submits it. `None` where one was already there.
    pub async fn submit_job_unless_active(
        &self,
        kind: JobKind,
        target: String,
        spec: serde_json::Value,
    ) -> Result<Option<JobRecord>> {
        self.commit(|state| {
            let active = state
                .jobs
                .values()
                .any(|j| j.kind == kind && j.target == target && !j.state.is_terminal());
            Ok((!active).then(|| new_job(state, kind, &target, &spec)))
        })
        .await
    }

    /// The job `id`.
    pub async fn job(&self, id: u64) -> Result<JobRecord> {
        self.state()
            .await?
            .jobs
            .get(&id)
            .cloned()
            .ok_or(CatalogError::JobNotFound { id })
    }

    /// Every job, newest first.
    pub async fn jobs(&self) -> Result<Vec<JobRecord>> {
        let mut jobs: Vec<JobRecord> = self.state().await?.jobs.values().cloned().collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
        Ok(jobs)
    }

    /// Applies `update` to job `id` and commits it. A finished job is not changed (the update is
    /// dropped and the record returned as is); progress never decreases.
    pub async fn update_job(
        &self,
        id: u64,
        mut update: impl FnMut(&mut JobRecord),
    ) -> Result<JobRecord> {
        self.commit(|state| {
            let job = state
                .jobs
                .get_mut(&id)
                .ok_or(CatalogError::JobNotFound { id })?;
            if job.state.is_terminal() {
                return Ok(job.clone());
            }
            let before = job.progress;
            update(job);
            job.progress = job.progress.clamp(before, 100);
            Ok(job.clone())
        })
        .await
    }

    /// The records of jobs that finished before `before`, in id order; unless `dry_run`, they are
    /// removed from the catalog in the same commit that finds them. A PENDING or RUNNING job is
    /// never removed.
    pub async fn expire_jobs(
        &self,
        before: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<JobRecord>> {
        let expired = |job: &JobRecord| job.finished_at.is_some_and(|at| at < before);
        let select = |state: &CatalogState| -> Vec<JobRecord> {
            state
                .jobs
                .values()
                .filter(|j| expired(j))
                .cloned()
                .collect()
        };
        if dry_run {
            return Ok(select(&*self.state().await?));
        }
        self.commit(|state| {
            let gone = select(state);
            state.jobs.retain(|_, job| !expired(job));
            Ok(gone)
        })
        .await
    }

    /// Asks for job `id` to be cancelled: a PENDING job is cancelled at once, a RUNNING one by
    /// its runner at its next step. Cancelling a finished job is an error naming its state.
    pub async fn request_cancel(&self, id: u64) -> Result<JobRecord> {
        self.commit(|state| {
            let job = state
                .jobs
                .get_mut(&id)
                .ok_or(CatalogError::JobNotFound { id })?;
            match job.state {
                JobState::Pending => {
                    job.state = JobState::Cancelled;
                    job.cancel_requested = true;
                    job.error = Some("cancelled before it started".to_string());
                    job.finished_at = Some(Utc::now());
                }
                JobState::Running => job.cancel_requested = true,
                finished => {
                    return Err(CatalogError::InvalidRequest {
                        message: format!("job {id} has already finished ({})", finished.as_str()),
                    })
                }
            }
            Ok(job.clone())
        })
        .await
    }
}

/// Adds a new PENDING job to `state`.
fn new_job(
    state: &mut CatalogState,
    kind: JobKind,
    target: &str,
    spec: &serde_json::Value,
) -> JobRecord {
    state.next_job_id = state.next_job_id.max(1);
    let id = state.next_job_id;
    state.next_job_id += 1;
    let job = JobRecord {
        id,
        kind,
        target: target.to_string(),
        spec: spec.clone(),
        state: JobState::Pending,
        progress: 0,
        files_done: 0,
        files_total: 0,
        bytes_done: 0,
        bytes_total: 0,
        rows_done: 0,
        rows_total: 0,
        error: None,
        created_at: Utc::now(),
        started_at: None,
        finished_at: None,
        owner: None,
        heartbeat_at: None,
        cancel_requested: false,
        result: None,
    };
    state.jobs.insert(id, job.clone());
    job
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::DataRoot;

    #[tokio::test]
    async fn progress_never_goes_back_and_finished_jobs_stay_finished() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(DataRoot::open(&dir.path().to_string_lossy()).await.unwrap())
            .await
            .unwrap();
        let job = catalog
            .submit_job(JobKind::Gc, "all".into(), serde_json::json!({}))
            .await
            .unwrap();
        assert_eq!(job.state, JobState::Pending);
        let next = catalog
            .submit_job(JobKind::Gc, "all".into(), serde_json::json!({}))
            .await
            .unwrap();
        assert_eq!(next.id, job.id + 1);
        catalog
            .update_job(job.id, |j| {
                j.state = JobState::Running;
                j.progress = 60;
            })
            .await
            .unwrap();
        let j = catalog
            .update_job(job.id, |j| j.progress = 20)
            .await
            .unwrap();
        assert_eq!(j.progress, 60);
        catalog
            .update_job(job.id, |j| j.state = JobState::Succeeded)
            .await
            .unwrap();
        let j = catalog
            .update_job(job.id, |j| j.state = JobState::Running)
            .await
            .unwrap();
        assert_eq!(j.state, JobState::Succeeded);
        let err = catalog.request_cancel(job.id).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("job {} has already finished (SUCCEEDED)", job.id)
        );
        let cancelled = catalog.request_cancel(next.id).await.unwrap();
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert!(matches!(
            catalog.job(999).await.unwrap_err(),
            CatalogError::JobNotFound { id: 999 }
        ));
    }

    #[tokio::test]
    async fn only_jobs_finished_before_the_cutoff_expire() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(DataRoot::open(&dir.path().to_string_lossy()).await.unwrap())
            .await
            .unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let job = catalog
                .submit_job(JobKind::Gc, "all".into(), serde_json::json!({}))
                .await
                .unwrap();
            ids.push(job.id);
        }
        let finished = |state: JobState| {
            move |j: &mut JobRecord| {
                j.state = state;
                j.finished_at = Some(Utc::now());
            }
        };
        catalog
            .update_job(ids[0], finished(JobState::Succeeded))
            .await
            .unwrap();
        catalog.request_cancel(ids[1]).await.unwrap();
        let cutoff = Utc::now() + chrono::Duration::seconds(1);
        let running = catalog
            .update_job(ids[2], |j| j.state = JobState::Running)
            .await
            .unwrap();
        let listed = catalog.expire_jobs(cutoff, true).await.unwrap();
        assert_eq!(
            catalog.jobs().await.unwrap().len(),
            3,
            "a dry run removes nothing"
        );
        let removed = catalog.expire_jobs(cutoff, false).await.unwrap();
        assert_eq!(listed, removed);
        let mut removed: Vec<u64> = removed.iter().map(|j| j.id).collect();
        removed.sort();
        assert_eq!(removed, ids[..2]);
        assert_eq!(catalog.jobs().await.unwrap(), vec![running]);
        let earlier = Utc::now() - chrono::Duration::hours(1);
        catalog
            .update_job(ids[2], finished(JobState::Failed))
            .await
            .unwrap();
        assert!(catalog
            .expire_jobs(earlier, false)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(catalog.jobs().await.unwrap().len(), 1);
    }
}
