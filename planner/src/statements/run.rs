//! Running a parsed statement: DataFusion plans the statements it knows (with Quiver's SQL
//! rewrites applied first, and the DDL that must reach Quiver's catalog intercepted after
//! planning); each of Quiver's own statements runs its family's method on the session.
//!
//! Every statement starts by refreshing the catalog, so it sees everything this process committed
//! before it began, and what other processes over the same root committed up to the catalog's
//! refresh interval before (zero by default: everything).

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{plan_err, Result};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan, WriteOp};

use super::limits::check_in_lists;
use super::parse::parse_statements;
use super::statement::QuiverStatement;
use super::tokens::normalize;
use crate::catalog::time_travel::rewrite_snapshot_functions;
use crate::config::QuiverConfig;
use crate::error::external;
use crate::knn::function::rewrite_knn_calls;
use crate::session::QuiverSession;
use crate::sql::vector_text::{rewrite_vector_text, write_target};
use crate::write::vector_cast::name_vector_casts;

impl QuiverSession {
    /// Plans (and, for commands, runs) one statement; queries and DML come back as lazy
    /// DataFrames that run when collected or streamed.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let mut statements = parse_statements(sql)?;
        if statements.len() != 1 {
            return plan_err!(
                "expected one statement, got {}; use run_script for several",
                statements.len()
            );
        }
        let statement = statements.remove(0);
        self.statement(statement).await
    }

    /// Runs every statement of a script in order, each to completion, and returns each
    /// statement's result.
    pub async fn run_script(&self, sql: &str) -> Result<Vec<Vec<RecordBatch>>> {
        let mut out = Vec::new();
        for statement in parse_statements(sql)? {
            out.push(self.statement(statement).await?.collect().await?);
        }
        Ok(out)
    }

    /// Plans (and, for commands, runs) one parsed statement.
    pub async fn statement(&self, statement: QuiverStatement) -> Result<DataFrame> {
        self.catalog().fresh_state().await.map_err(external)?;
        match statement {
            QuiverStatement::DataFusion(mut statement) => {
                check_in_lists(&mut statement)?;
                rewrite_knn_calls(&mut statement)?;
                rewrite_snapshot_functions(&mut statement)?;
                // An unknown target is DataFusion's to report, when it plans the statement.
                let target = match write_target(&statement) {
                    Some(name) => self
                        .context()
                        .table_provider(name.to_string())
                        .await
                        .ok()
                        .map(|t| t.schema()),
                    None => None,
                };
                rewrite_vector_text(&mut statement, target.as_deref())?;
                let plan = self.context().state().statement_to_plan(*statement).await?;
                self.execute_plan(plan).await
            }
            QuiverStatement::CreateDatabase {
                name,
                if_not_exists,
            } => {
                self.catalog()
                    .create_database(&normalize(&name), if_not_exists)
                    .await
                    .map_err(external)?;
                self.done()
            }
            QuiverStatement::DropDatabase {
                name,
                if_exists,
                cascade,
            } => {
                self.catalog()
                    .drop_database(&normalize(&name), if_exists, cascade)
                    .await
                    .map_err(external)?;
                self.done()
            }
            QuiverStatement::DropTable {
                names,
                if_exists,
                cascade,
            } => {
                for name in names {
                    let (database, table) = self.resolve(&name)?;
                    self.catalog()
                        .drop_collection(&database, &table, if_exists, cascade)
                        .await
                        .map_err(external)?;
                }
                self.done()
            }
            QuiverStatement::ShowDatabases => self.show_databases().await,
            QuiverStatement::Describe { name } => self.describe(&name).await,
            QuiverStatement::CreateIndex(create) => self.create_index(&create).await,
            QuiverStatement::DropIndex {
                name,
                table,
                if_exists,
            } => self.drop_index(&name, table.as_ref(), if_exists).await,
            QuiverStatement::ShowSetting { name } => self.show_setting(&name),
            QuiverStatement::ShowIndexes { table } => self.show_indexes(table.as_ref()).await,
            QuiverStatement::CreateSnapshot {
                name,
                table,
                comment,
            } => self.create_snapshot(&name, &table, comment).await,
            QuiverStatement::DropSnapshot {
                name,
                table,
                if_exists,
            } => self.drop_snapshot(&name, &table, if_exists).await,
            QuiverStatement::ShowSnapshots { table } => self.show_snapshots(table.as_ref()).await,
            QuiverStatement::DescribeSnapshot { name, table } => {
                self.describe_snapshot(&name, &table).await
            }
            statement @ QuiverStatement::Restore { .. } => self.restore(&statement).await,
            statement @ QuiverStatement::Vacuum { .. } => self.vacuum(&statement).await,
            statement @ QuiverStatement::Optimize { .. } => self.optimize(&statement).await,
            QuiverStatement::ExplainJob(statement) => self.explain_job(&statement).await,
            QuiverStatement::ShowJobs => self.show_jobs().await,
            QuiverStatement::CancelJob { id } => self.cancel_job(id).await,
            QuiverStatement::CopyFrom {
                name,
                path,
                options,
            } => self.copy_from(&name, &path, &options).await,
            QuiverStatement::SetProperties { name, properties } => {
                let (database, table) = self.resolve(&name)?;
                self.catalog()
                    .set_properties(&database, &table, &properties)
                    .await
                    .map_err(external)?;
                self.done()
            }
        }
    }

    /// Runs a DataFusion plan, intercepting the DDL that must go to Quiver's catalog.
    async fn execute_plan(&self, plan: LogicalPlan) -> Result<DataFrame> {
        match plan {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                self.create_table(create).await
            }
            LogicalPlan::Ddl(DdlStatement::CreateView(_)) => {
                plan_err!("CREATE VIEW is not supported: collections are Quiver's only tables")
            }
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(_)) => plan_err!(
                "CREATE EXTERNAL TABLE is not supported; load files with COPY <table> FROM '<path>'"
            ),
            LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_) | WriteOp::Update) => {
                let input = name_vector_casts(dml.input.as_ref().clone())?;
                let dml = DmlStatement {
                    input: Arc::new(input),
                    ..dml
                };
                self.context()
                    .execute_logical_plan(LogicalPlan::Dml(dml))
                    .await
            }
            other => self.context().execute_logical_plan(other).await,
        }
    }

    /// `SHOW quiver.<name>` (DataFusion's `SHOW` does not find extension settings).
    fn show_setting(&self, name: &str) -> Result<DataFrame> {
        let state = self.context().state();
        let entries = state
            .config_options()
            .extensions
            .get::<QuiverConfig>()
            .map(datafusion::common::config::ExtensionOptions::entries)
            .unwrap_or_default();
        let Some(entry) = entries.iter().find(|e| e.key == name) else {
            return plan_err!(
                "unknown setting 'quiver.{name}'; known: {}",
                entries
                    .iter()
                    .map(|e| format!("quiver.{}", e.key))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(StringArray::from(vec![format!("quiver.{name}")])),
                Arc::new(StringArray::from(vec![entry.value.clone()])),
            ],
        )?;
        self.result(batch)
    }
}
