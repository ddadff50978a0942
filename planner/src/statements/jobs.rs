//! Job statements: `RESTORE`, `VACUUM`, `OPTIMIZE`, `SHOW JOBS`, `CANCEL JOB`, and `EXPLAIN` of
//! the first three.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{plan_err, DataFusionError, Result};
use datafusion::dataframe::DataFrame;
use datafusion::physical_plan::{displayable, ExecutionPlan};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;
use quiver_catalog::{JobKind, JobRecord, JobState};
use quiver_operators::jobs::collection_optimize::CollectionOptimize;
use quiver_operators::jobs::NoProgress;

use super::statement::QuiverStatement;
use super::tokens::{
    first_word_is, normalize, parse_snapshot_name, parse_with_options, second_word_is,
};
use crate::catalog::system::jobs_batch;
use crate::config::QuiverConfig;
use crate::error::external;
use crate::jobs::gc::{self, GcSpec};
use crate::jobs::optimize::{self, OptimizeSpec};
use crate::jobs::restore::{self, RestoreMode};
use crate::session::QuiverSession;

fn option<'a>(options: &'a [(String, String)], key: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn check_options(options: &[(String, String)], known: &[&str]) -> Result<()> {
    match options.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some((k, _)) => plan_err!("unknown option '{k}' (known: {})", known.join(", ")),
        None => Ok(()),
    }
}

fn seconds(options: &[(String, String)], key: &str, default: u64) -> Result<i64> {
    match option(options, key) {
        None => Ok(default as i64),
        Some(v) => v.parse::<i64>().ok().filter(|s| *s >= 0).ok_or_else(|| {
            DataFusionError::Plan(format!("{key} must be a number of seconds, got '{v}'"))
        }),
    }
}

/// The plan as `EXPLAIN` shows it.
fn explain(plan: &Arc<dyn ExecutionPlan>) -> Result<RecordBatch> {
    let text = displayable(plan.as_ref()).indent(false).to_string();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("plan_type", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(StringArray::from(vec!["physical_plan"])),
            Arc::new(StringArray::from(vec![text])),
        ],
    )?)
}

/// One row naming a submitted job: `job_id, kind, target, state`.
fn submitted(job: &JobRecord) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("job_id", DataType::UInt64, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("target", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(UInt64Array::from(vec![job.id])),
            Arc::new(StringArray::from(vec![job.kind.as_str()])),
            Arc::new(StringArray::from(vec![job.target.as_str()])),
            Arc::new(StringArray::from(vec![job.state.as_str()])),
        ],
    )?)
}

/// The result rows a finished job kept in its record (see `JobScheduler`), read back with
/// `schema`.
fn report(job: &JobRecord, schema: datafusion::arrow::datatypes::SchemaRef) -> Result<RecordBatch> {
    let rows = job
        .result
        .as_ref()
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    let mut decoder =
        datafusion::arrow::json::ReaderBuilder::new(schema.clone()).build_decoder()?;
    decoder.serialize(&rows)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

impl QuiverSession {
    fn settings(&self) -> QuiverConfig {
        self.context()
            .state()
            .config_options()
            .extensions
            .get::<QuiverConfig>()
            .cloned()
            .unwrap_or_default()
    }

    /// The restore a `RESTORE` statement asks for, validated.
    async fn restore_spec(
        &self,
        statement: &QuiverStatement,
    ) -> Result<(
        quiver_catalog::CollectionRecord,
        quiver_catalog::SnapshotRecord,
        restore::RestoreSpec,
    )> {
        let QuiverStatement::Restore {
            snapshot,
            table,
            target,
            target_database,
            options,
        } = statement
        else {
            return plan_err!("not a RESTORE statement");
        };
        check_options(options, &["mode"])?;
        let (database, collection) = self.resolve(table)?;
        let (record, snapshot) = self
            .catalog()
            .snapshot(&database, &collection, snapshot)
            .await
            .map_err(external)?;
        let (mode, target) = match target {
            None => (RestoreMode::InPlace, None),
            Some(target) => {
                let mode = option(options, "mode")
                    .map(RestoreMode::parse)
                    .transpose()?;
                let mode = mode.unwrap_or(RestoreMode::Copy);
                if mode == RestoreMode::InPlace {
                    return plan_err!(
                        "an in-place restore is written RESTORE TABLE t TO SNAPSHOT s"
                    );
                }
                let (mut db, name) = self.resolve(target)?;
                if let Some(ident) = target_database {
                    db = normalize(ident);
                }
                (mode, Some((db, name)))
            }
        };
        let spec = restore::spec(self.catalog(), &record, &snapshot, mode, target).await?;
        Ok((record, snapshot, spec))
    }

    /// `RESTORE ...`: submits the job and returns its id at once.
    pub(crate) async fn restore(&self, statement: &QuiverStatement) -> Result<DataFrame> {
        let (record, snapshot, spec) = self.restore_spec(statement).await?;
        let job = restore::submit(self.scheduler(), &record, &snapshot, &spec).await?;
        self.result(submitted(&job)?)
    }

    fn gc_spec(&self, statement: &QuiverStatement) -> Result<(GcSpec, Option<(String, String)>)> {
        let QuiverStatement::Vacuum {
            table,
            dry_run,
            options,
        } = statement
        else {
            return plan_err!("not a VACUUM statement");
        };
        check_options(
            options,
            &[
                "retention_seconds",
                "grace_seconds",
                "job_retention_seconds",
            ],
        )?;
        let settings = self.settings();
        let spec = GcSpec {
            retention_seconds: seconds(
                options,
                "retention_seconds",
                settings.gc_retention_seconds,
            )?,
            grace_seconds: seconds(options, "grace_seconds", settings.gc_grace_seconds)?,
            dry_run: *dry_run,
            collection_id: None,
            job_retention_seconds: seconds(
                options,
                "job_retention_seconds",
                settings.gc_job_retention_seconds,
            )?,
        };
        let table = table.as_ref().map(|t| self.resolve(t)).transpose()?;
        Ok((spec, table))
    }

    async fn scoped(&self, mut spec: GcSpec, table: Option<(String, String)>) -> Result<GcSpec> {
        if let Some((database, name)) = table {
            let record = self
                .catalog()
                .collection(&database, &name)
                .await
                .map_err(external)?;
            spec.collection_id = Some(record.id);
        }
        Ok(spec)
    }

    /// `VACUUM ...`: runs garbage collection as a job, waits for it, returns its report.
    pub(crate) async fn vacuum(&self, statement: &QuiverStatement) -> Result<DataFrame> {
        let (spec, table) = self.gc_spec(statement)?;
        let spec = self.scoped(spec, table).await?;
        let job = gc::submit(self.scheduler(), spec).await?;
        let done = self.finished(&job, "garbage collection").await?;
        self.result(report(&done, gc::summary_schema())?)
    }

    /// Waits for `job` (a `what`) to end; an error unless it succeeded.
    async fn finished(&self, job: &JobRecord, what: &str) -> Result<JobRecord> {
        let done = self.scheduler().wait(job.id).await?;
        if done.state != JobState::Succeeded {
            return Err(DataFusionError::Execution(format!(
                "{what} (job {}) {}: {}",
                done.id,
                done.state.as_str(),
                done.error.clone().unwrap_or_default()
            )));
        }
        Ok(done)
    }

    /// The collection and the optimisation an `OPTIMIZE` statement asks for.
    async fn optimize_spec(
        &self,
        statement: &QuiverStatement,
    ) -> Result<(quiver_catalog::CollectionRecord, OptimizeSpec)> {
        let QuiverStatement::Optimize { table, options } = statement else {
            return plan_err!("not an OPTIMIZE statement");
        };
        check_options(options, &["retrain"])?;
        let retrain = match option(options, "retrain") {
            None => false,
            Some(v) => v.parse::<bool>().map_err(|_| {
                DataFusionError::Plan(format!("retrain must be true or false, got '{v}'"))
            })?,
        };
        let (database, name) = self.resolve(table)?;
        let record = self
            .catalog()
            .collection(&database, &name)
            .await
            .map_err(external)?;
        let spec = OptimizeSpec {
            collection_id: record.id.clone(),
            retrain,
        };
        Ok((record, spec))
    }

    /// `OPTIMIZE ...`: compacts the collection and brings its vector indices up to date as a
    /// job (after the one already pending or running for it, if any), waits for it, and returns
    /// its report.
    pub(crate) async fn optimize(&self, statement: &QuiverStatement) -> Result<DataFrame> {
        let (record, spec) = self.optimize_spec(statement).await?;
        let busy = self
            .catalog()
            .jobs()
            .await
            .map_err(external)?
            .into_iter()
            .filter(|j| j.kind == JobKind::Optimize && j.target == record.qualified_name());
        for job in busy.filter(|j| !j.state.is_terminal()) {
            self.scheduler().wait(job.id).await?;
        }
        let job = optimize::submit(self.scheduler(), &record, &spec, false)
            .await?
            .ok_or_else(|| {
                DataFusionError::Internal("the optimisation was not submitted".into())
            })?;
        let done = self.finished(&job, "index optimisation").await?;
        self.result(report(&done, CollectionOptimize::report_schema())?)
    }

    /// `EXPLAIN RESTORE ...` / `EXPLAIN VACUUM ...`: the job's plan, not run.
    pub(crate) async fn explain_job(&self, statement: &QuiverStatement) -> Result<DataFrame> {
        let progress = Arc::new(NoProgress);
        let plan = match statement {
            QuiverStatement::Restore { .. } => {
                let (_, _, spec) = self.restore_spec(statement).await?;
                restore::build(self.catalog(), &spec, progress).await?.plan
            }
            QuiverStatement::Vacuum { .. } => {
                let (spec, table) = self.gc_spec(statement)?;
                let spec = self.scoped(spec, table).await?;
                gc::build(self.catalog(), &spec, progress).await?
            }
            QuiverStatement::Optimize { .. } => {
                let (_, spec) = self.optimize_spec(statement).await?;
                optimize::build(self.catalog(), &spec, progress).await?
            }
            _ => return plan_err!("EXPLAIN of jobs covers RESTORE, VACUUM and OPTIMIZE"),
        };
        self.result(explain(&plan)?)
    }

    /// `SHOW JOBS`: every job, newest first.
    pub(crate) async fn show_jobs(&self) -> Result<DataFrame> {
        let jobs = self.catalog().jobs().await.map_err(external)?;
        self.result(jobs_batch(&jobs)?)
    }

    /// `CANCEL JOB id`: the job, as it is after the request.
    pub(crate) async fn cancel_job(&self, id: u64) -> Result<DataFrame> {
        let job = self.scheduler().cancel(id).await?;
        self.result(jobs_batch(&[job])?)
    }
}

/// `RESTORE`, `VACUUM`, `OPTIMIZE`, `SHOW JOBS`, `CANCEL JOB`, and `EXPLAIN` of the first three.
pub(super) fn parse_job_statement(parser: &mut DFParser<'_>) -> Result<Option<QuiverStatement>> {
    if parser.parser.peek_keyword(Keyword::EXPLAIN)
        && ["restore", "vacuum", "optimize"]
            .iter()
            .any(|w| second_word_is(parser, w))
    {
        parser.parser.next_token();
        return Ok(parse_job_statement(parser)?.map(|s| QuiverStatement::ExplainJob(Box::new(s))));
    }
    if first_word_is(parser, "show") && second_word_is(parser, "jobs") {
        parser.parser.next_token();
        parser.parser.next_token();
        return Ok(Some(QuiverStatement::ShowJobs));
    }
    if first_word_is(parser, "cancel") && second_word_is(parser, "job") {
        parser.parser.next_token();
        parser.parser.next_token();
        let id = parser.parser.parse_literal_uint()?;
        return Ok(Some(QuiverStatement::CancelJob { id }));
    }
    if first_word_is(parser, "optimize") {
        parser.parser.next_token();
        let _ = parser.parser.parse_keyword(Keyword::TABLE);
        let table = parser.parser.parse_object_name(false)?;
        let options = parse_with_options(parser)?;
        return Ok(Some(QuiverStatement::Optimize { table, options }));
    }
    if first_word_is(parser, "vacuum") {
        parser.parser.next_token();
        let table = match &parser.parser.peek_token_ref().token {
            Token::Word(w) if w.keyword == Keyword::NoKeyword || w.quote_style.is_some() => {
                Some(parser.parser.parse_object_name(false)?)
            }
            _ => None,
        };
        let dry_run =
            parser.parser.parse_keyword(Keyword::DRY) && parser.parser.parse_keyword(Keyword::RUN);
        let options = parse_with_options(parser)?;
        return Ok(Some(QuiverStatement::Vacuum {
            table,
            dry_run,
            options,
        }));
    }
    if !first_word_is(parser, "restore") {
        return Ok(None);
    }
    parser.parser.next_token();
    if parser.parser.parse_keyword(Keyword::TABLE) {
        let p = &mut parser.parser;
        let table = p.parse_object_name(false)?;
        p.expect_keyword_is(Keyword::TO)?;
        p.expect_keyword_is(Keyword::SNAPSHOT)?;
        let snapshot = parse_snapshot_name(parser)?;
        return Ok(Some(QuiverStatement::Restore {
            snapshot,
            table,
            target: None,
            target_database: None,
            options: vec![],
        }));
    }
    parser.parser.expect_keyword_is(Keyword::SNAPSHOT)?;
    let snapshot = parse_snapshot_name(parser)?;
    let p = &mut parser.parser;
    p.expect_keyword_is(Keyword::ON)?;
    let table = p.parse_object_name(false)?;
    p.expect_keyword_is(Keyword::TO)?;
    let target = p.parse_object_name(false)?;
    let target_database = if p.parse_keywords(&[Keyword::IN, Keyword::DATABASE]) {
        Some(p.parse_identifier()?)
    } else {
        None
    };
    let options = parse_with_options(parser)?;
    Ok(Some(QuiverStatement::Restore {
        snapshot,
        table,
        target: Some(target),
        target_database,
        options,
    }))
}
