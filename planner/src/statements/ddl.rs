//! Collection DDL and catalog listings: `CREATE TABLE [AS]`, `DESCRIBE`, `SHOW DATABASES`.

use quiver_catalog::CollectionRecord;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{plan_err, Constraint, Result, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{CreateMemoryTable, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::ast::ObjectName;

use super::statement::QuiverStatement;
use super::tokens::option_value;
use crate::catalog::provider::CATALOG_NAME;
use crate::error::{external, PlannerError};
use crate::jobs::optimize::{Threshold, THRESHOLD_PROPERTY};
use crate::session::QuiverSession;
use crate::sql::types::sql_type_name;

impl QuiverSession {
    /// `CREATE TABLE`: a new collection (a Lance dataset), filled from the query for
    /// `CREATE TABLE ... AS SELECT`. A failed fill drops the new collection again.
    pub(crate) async fn create_table(&self, create: CreateMemoryTable) -> Result<DataFrame> {
        let (database, name) = self.resolve_reference(&create.name)?;
        if create.temporary {
            return plan_err!("TEMPORARY tables are not supported");
        }
        if !create.column_defaults.is_empty() {
            return plan_err!("column DEFAULT values are not supported");
        }
        let input_schema = create.input.schema().as_arrow().clone();
        let mut primary_key = Vec::new();
        for constraint in create.constraints.iter() {
            match constraint {
                Constraint::PrimaryKey(columns) => {
                    primary_key = columns
                        .iter()
                        .map(|i| input_schema.field(*i).name().clone())
                        .collect();
                }
                Constraint::Unique(_) => {
                    return plan_err!(
                        "UNIQUE constraints are not supported; declare a PRIMARY KEY, which is enforced"
                    )
                }
            }
        }
        let fields: Vec<Field> = input_schema
            .fields()
            .iter()
            .map(|f| {
                let is_key = primary_key.contains(f.name());
                Field::clone(f).with_nullable(f.is_nullable() && !is_key)
            })
            .collect();
        if let Some(f) = fields.iter().find(|f| f.data_type() == &DataType::Null) {
            return plan_err!(
                "column '{}' has no type: give it one, or cast the query's NULL",
                f.name()
            );
        }
        let schema = Arc::new(Schema::new(fields));
        // CREATE OR REPLACE builds the new collection under a staging name and swaps it in with
        // one catalog commit: until then the old one is untouched (and readable by the query
        // filling the new one); if the fill fails, only the staged collection is dropped.
        let staged = create
            .or_replace
            .then(|| format!("_replacing_{}", uuid::Uuid::new_v4().simple()));
        let if_not_exists = create.if_not_exists && staged.is_none();
        let created = self
            .catalog()
            .create_collection(
                &database,
                staged.as_deref().unwrap_or(&name),
                schema,
                primary_key,
                if_not_exists,
            )
            .await
            .map_err(external)?;
        let Some(created) = created else {
            return self.done();
        };
        let mut result = Ok(());
        if !matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(_)) {
            result = self
                .fill(&database, &created.name, (*create.input).clone())
                .await
                .map(|_| ());
        }
        if result.is_ok() && staged.is_some() {
            result = self
                .catalog()
                .replace_collection(&database, &name, &created.id)
                .await
                .map_err(external);
        }
        if let Err(e) = result {
            self.catalog()
                .drop_collection(&database, &created.name, true, true)
                .await
                .map_err(external)?;
            return Err(e);
        }
        self.done()
    }

    /// Inserts the rows of `input` into `database.name`.
    pub(crate) async fn fill(&self, database: &str, name: &str, input: LogicalPlan) -> Result<u64> {
        let reference = TableReference::full(CATALOG_NAME, database, name);
        let provider = self.context().table_provider(reference.clone()).await?;
        let plan = LogicalPlanBuilder::insert_into(
            input,
            reference,
            provider_as_source(provider),
            InsertOp::Append,
        )?
        .build()?;
        let batches = self
            .context()
            .execute_logical_plan(plan)
            .await?
            .collect()
            .await?;
        Ok(batches
            .first()
            .and_then(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::UInt64Array>()
                    .map(|a| a.value(0))
            })
            .unwrap_or(0))
    }

    /// The collection `name` names and its current version.
    pub(super) async fn open_collection(
        &self,
        name: &ObjectName,
    ) -> Result<(CollectionRecord, lance::Dataset)> {
        let (database, table) = self.resolve(name)?;
        let record = self
            .catalog()
            .collection(&database, &table)
            .await
            .map_err(external)?;
        let dataset = self
            .catalog()
            .open_dataset(&record, None)
            .await
            .map_err(external)?;
        Ok((record, dataset))
    }

    /// `DESCRIBE name`: columns with their SQL types (vectors as `VECTOR(n)`), nullability and
    /// primary key.
    pub(crate) async fn describe(&self, name: &ObjectName) -> Result<DataFrame> {
        let (record, dataset) = self.open_collection(name).await?;
        let schema = Schema::from(dataset.schema());
        let fields = schema.fields();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("column_name", DataType::Utf8, false),
                Field::new("data_type", DataType::Utf8, false),
                Field::new("is_nullable", DataType::Utf8, false),
                Field::new("key", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(StringArray::from_iter_values(
                    fields.iter().map(|f| f.name()),
                )),
                Arc::new(StringArray::from_iter_values(
                    fields.iter().map(|f| sql_type_name(f.data_type())),
                )),
                Arc::new(StringArray::from_iter_values(fields.iter().map(|f| {
                    if f.is_nullable() {
                        "YES"
                    } else {
                        "NO"
                    }
                }))),
                Arc::new(StringArray::from_iter_values(fields.iter().map(|f| {
                    if record.primary_key.contains(f.name()) {
                        "PRI"
                    } else {
                        ""
                    }
                }))),
            ],
        )?;
        self.result(batch)
    }

    /// `SHOW DATABASES`.
    pub(crate) async fn show_databases(&self) -> Result<DataFrame> {
        let state = self.catalog().state().await.map_err(external)?;
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, false)])),
            vec![Arc::new(StringArray::from_iter_values(
                state.databases.keys().map(String::as_str),
            ))],
        )?;
        self.result(batch)
    }
}

/// `ALTER TABLE ... SET TBLPROPERTIES (...)` / `SET (...)` as [`QuiverStatement::SetProperties`];
/// any other `ALTER TABLE` is refused by name.
pub(super) fn alter_table(alter: &ast::AlterTable) -> Result<QuiverStatement> {
    let [operation] = alter.operations.as_slice() else {
        return plan_err!("ALTER TABLE takes one SET TBLPROPERTIES (...) at a time");
    };
    let options = match operation {
        ast::AlterTableOperation::SetTblProperties { table_properties } => table_properties,
        ast::AlterTableOperation::SetOptionsParens { options } => options,
        other => {
            return Err(PlannerError::Unsupported(format!(
                "ALTER TABLE ... {other} is not supported; ALTER TABLE sets properties: \
                 ALTER TABLE t SET TBLPROPERTIES ('key' = 'value')"
            ))
            .into())
        }
    };
    let mut properties = Vec::with_capacity(options.len());
    for option in options {
        let ast::SqlOption::KeyValue { key, value } = option else {
            return plan_err!("table properties are written 'key' = 'value', got '{option}'");
        };
        let value = match value {
            ast::Expr::Value(v) if matches!(v.value, ast::Value::Null) => None,
            other => match option_value(other) {
                Some(v) => Some(v),
                None => {
                    return plan_err!("the value of property '{}' must be a literal", key.value)
                }
            },
        };
        if let (THRESHOLD_PROPERTY, Some(value)) = (key.value.as_str(), &value) {
            Threshold::parse(value)?;
        }
        properties.push((key.value.clone(), value));
    }
    Ok(QuiverStatement::SetProperties {
        name: alter.name.clone(),
        properties,
    })
}
