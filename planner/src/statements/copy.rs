//! `COPY <collection> FROM '<path>' [WITH (FORMAT parquet|csv, HEADER true|false, DELIMITER ',')]`:
//! bulk load from Parquet or CSV files.
//!
//! File columns are matched to collection columns by name; a column the file lacks is NULL (an
//! error if the column is NOT NULL), a file column the collection lacks is an error. Vector
//! columns accept lists of numbers (Parquet) or text such as `"[0.1, 0.2]"` (CSV). The load is
//! one insert: all rows or, on any error, none.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{plan_err, Result};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::prelude::{cast, col, lit, CsvReadOptions, Expr, ParquetReadOptions};
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::statement::QuiverStatement;
use super::tokens::{parse_option_list, parse_with_options};
use crate::catalog::provider::CATALOG_NAME;
use crate::error::external;
use crate::session::QuiverSession;
use crate::write::vector_cast::to_vector_expr;

/// The file formats `COPY ... FROM` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Parquet,
    Csv,
}

fn option<'a>(options: &'a [(String, String)], key: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn bool_option(options: &[(String, String)], key: &str, default: bool) -> Result<bool> {
    match option(options, key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v == "true" || v == "1" || v == "yes" => Ok(true),
        Some(v) if v == "false" || v == "0" || v == "no" => Ok(false),
        Some(v) => plan_err!("COPY option {key}: expected true or false, got '{v}'"),
    }
}

impl QuiverSession {
    /// Runs `COPY name FROM path`; returns one row with the number of rows loaded.
    pub(crate) async fn copy_from(
        &self,
        name: &ObjectName,
        path: &str,
        options: &[(String, String)],
    ) -> Result<DataFrame> {
        let (database, table) = self.resolve(name)?;
        let record = self
            .catalog()
            .collection(&database, &table)
            .await
            .map_err(external)?;
        for (key, _) in options {
            if !["format", "header", "delimiter"].contains(&key.as_str()) {
                return plan_err!("unknown COPY option '{key}' (known: FORMAT, HEADER, DELIMITER)");
            }
        }
        let format = match option(options, "format").map(str::to_ascii_lowercase) {
            Some(f) if f == "parquet" => Format::Parquet,
            Some(f) if f == "csv" => Format::Csv,
            Some(f) => return plan_err!("unknown COPY format '{f}' (known: parquet, csv)"),
            None if path.to_ascii_lowercase().ends_with(".csv") => Format::Csv,
            None if path.to_ascii_lowercase().ends_with(".parquet") => Format::Parquet,
            None => {
                return plan_err!("cannot tell the format of '{path}': add WITH (FORMAT parquet) or WITH (FORMAT csv)")
            }
        };
        if !path.contains("://") && !std::path::Path::new(path).exists() {
            return plan_err!("COPY source '{path}' does not exist");
        }
        let unreadable = |e: DataFusionError| {
            DataFusionError::Plan(format!("cannot read '{path}' as {format:?}: {e}"))
        };
        let source = match format {
            Format::Parquet => self
                .context()
                .read_parquet(path, ParquetReadOptions::default())
                .await
                .map_err(unreadable)?,
            Format::Csv => {
                let delimiter = match option(options, "delimiter") {
                    None => b',',
                    Some(d) if d.len() == 1 => d.as_bytes()[0],
                    Some(d) => return plan_err!("COPY DELIMITER must be one character, got '{d}'"),
                };
                let csv = CsvReadOptions::new()
                    .has_header(bool_option(options, "header", true)?)
                    .delimiter(delimiter);
                self.context()
                    .read_csv(path, csv)
                    .await
                    .map_err(unreadable)?
            }
        };
        let reference = datafusion::common::TableReference::full(
            CATALOG_NAME,
            database.as_str(),
            table.as_str(),
        );
        let target = self.context().table_provider(reference).await?.schema();
        let projected = project_onto(source, &target, &record.qualified_name())?;
        let loaded = self
            .fill(&database, &table, projected.into_unoptimized_plan())
            .await
            .map_err(|e| match e {
                DataFusionError::ArrowError(..) | DataFusionError::ParquetError(..) => {
                    DataFusionError::Execution(format!("COPY from '{path}' failed: {e}"))
                }
                other => other,
            })?;
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "count",
                DataType::UInt64,
                false,
            )])),
            vec![Arc::new(UInt64Array::from(vec![loaded]))],
        )?;
        self.result(batch)
    }
}

/// Selects the file's columns in the collection's order and types.
fn project_onto(source: DataFrame, target: &Schema, table: &str) -> Result<DataFrame> {
    let file_schema = source.schema().clone();
    for field in file_schema.fields() {
        if target.field_with_name(field.name()).is_err() {
            return plan_err!(
                "the file's column '{}' is not a column of '{table}'",
                field.name()
            );
        }
    }
    let mut exprs: Vec<Expr> = Vec::with_capacity(target.fields().len());
    for field in target.fields() {
        let name = field.name();
        let expr = match file_schema.field_with_unqualified_name(name) {
            Ok(source_field) => {
                let value = col(datafusion::common::Column::new_unqualified(name));
                if source_field.data_type() == field.data_type() {
                    value
                } else if let Some(v) = to_vector_expr(value.clone(), field.data_type(), name) {
                    v
                } else {
                    cast(value, field.data_type().clone())
                }
            }
            Err(_) if field.is_nullable() => {
                cast(lit(ScalarValue::Null), field.data_type().clone())
            }
            Err(_) => {
                return plan_err!(
                    "the file has no column '{name}', which '{table}' requires (NOT NULL)"
                )
            }
        };
        exprs.push(expr.alias(name));
    }
    source.select(exprs)
}

/// Whether `COPY <name> FROM` follows (DataFusion parses only `COPY ... TO`).
pub(super) fn copy_is_from(parser: &DFParser<'_>) -> bool {
    let mut n = 1;
    loop {
        match parser.parser.peek_nth_token(n).token {
            Token::Word(w) if w.keyword == Keyword::FROM && w.quote_style.is_none() => return true,
            Token::Word(w) if w.keyword == Keyword::TO && w.quote_style.is_none() => return false,
            Token::Word(_) | Token::Period => n += 1,
            _ => return false,
        }
    }
}

/// `COPY name FROM 'path' [WITH] (...)`.
pub(super) fn parse_copy_from(parser: &mut DFParser<'_>) -> Result<QuiverStatement> {
    let p = &mut parser.parser;
    p.expect_keyword_is(Keyword::COPY)?;
    let name = p.parse_object_name(true)?;
    p.expect_keyword_is(Keyword::FROM)?;
    let path = p.parse_literal_string()?;
    // `WITH` is optional before COPY's option list.
    let options = if p.peek_token().token == Token::LParen {
        parse_option_list(parser)?
    } else {
        parse_with_options(parser)?
    };
    Ok(QuiverStatement::CopyFrom {
        name,
        path,
        options,
    })
}
