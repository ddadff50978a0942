//! Snapshot statements: `CREATE SNAPSHOT`, `DROP SNAPSHOT`, `SHOW SNAPSHOTS`,
//! `DESCRIBE SNAPSHOT`. The lifecycle itself is the catalog's
//! ([`quiver_catalog::snapshot`]).

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Result;
use datafusion::dataframe::DataFrame;
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::statement::QuiverStatement;
use super::tokens::{parse_snapshot_name, second_word_is};
use crate::catalog::system::snapshots_batch;
use crate::error::external;
use crate::session::QuiverSession;
use crate::sql::types::sql_type_name;

impl QuiverSession {
    /// `CREATE SNAPSHOT name ON table [COMMENT '...']`: one row describing the new snapshot.
    pub(crate) async fn create_snapshot(
        &self,
        name: &str,
        table: &ObjectName,
        comment: Option<String>,
    ) -> Result<DataFrame> {
        let (database, collection) = self.resolve(table)?;
        let snapshot = self
            .catalog()
            .create_snapshot(&database, &collection, name, comment)
            .await
            .map_err(external)?;
        self.result(snapshots_batch(&[snapshot])?)
    }

    /// `DROP SNAPSHOT [IF EXISTS] name ON table`.
    pub(crate) async fn drop_snapshot(
        &self,
        name: &str,
        table: &ObjectName,
        if_exists: bool,
    ) -> Result<DataFrame> {
        let (database, collection) = self.resolve(table)?;
        self.catalog()
            .drop_snapshot(&database, &collection, name, if_exists)
            .await
            .map_err(external)?;
        self.done()
    }

    /// `SHOW SNAPSHOTS [ON table]`: committed snapshots.
    pub(crate) async fn show_snapshots(&self, table: Option<&ObjectName>) -> Result<DataFrame> {
        let target = table.map(|t| self.resolve(t)).transpose()?;
        let snapshots = self
            .catalog()
            .list_snapshots(
                target.as_ref().map(|(d, _)| d.as_str()),
                target.as_ref().map(|(_, c)| c.as_str()),
            )
            .await
            .map_err(external)?;
        self.result(snapshots_batch(&snapshots)?)
    }

    /// `DESCRIBE SNAPSHOT name ON table`: one `property, value` row per fact, from the catalog
    /// record and the manifest's metadata.
    pub(crate) async fn describe_snapshot(
        &self,
        name: &str,
        table: &ObjectName,
    ) -> Result<DataFrame> {
        let (database, collection) = self.resolve(table)?;
        let (_, snapshot) = self
            .catalog()
            .snapshot(&database, &collection, name)
            .await
            .map_err(external)?;
        let metadata = self
            .catalog()
            .snapshot_metadata(&snapshot)
            .await
            .map_err(external)?;
        let schema = metadata
            .schema
            .fields()
            .iter()
            .map(|f| {
                let null = if f.is_nullable() { "" } else { " NOT NULL" };
                format!("{} {}{null}", f.name(), sql_type_name(f.data_type()))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let indices = metadata
            .indices
            .iter()
            .map(|ix| {
                format!(
                    "{} {}({}) metric={}",
                    ix.name, ix.index_type, ix.column, ix.metric
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let mut properties: Vec<_> = metadata.properties.iter().collect();
        properties.sort();
        let rows: Vec<(&str, String)> = vec![
            ("id", snapshot.id.clone()),
            ("name", snapshot.name.clone()),
            (
                "collection",
                format!("{}.{}", snapshot.database, snapshot.collection),
            ),
            ("comment", snapshot.comment.clone().unwrap_or_default()),
            ("state", snapshot.state.as_str().to_string()),
            ("created_at", snapshot.created_at.to_rfc3339()),
            ("version", snapshot.version.to_string()),
            ("rows", snapshot.rows.to_string()),
            ("files", snapshot.files.to_string()),
            ("bytes", snapshot.bytes.to_string()),
            ("schema", schema),
            ("primary_key", metadata.primary_key.join(", ")),
            ("indices", indices),
            (
                "properties",
                properties
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ("manifest", snapshot.manifest_path.clone()),
            ("format_version", metadata.format_version.clone()),
        ];
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("property", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, false),
            ])),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.1.as_str()),
                )),
            ],
        )?;
        self.result(batch)
    }
}

/// `CREATE SNAPSHOT`, `DROP SNAPSHOT`, `SHOW SNAPSHOTS`, `DESCRIBE SNAPSHOT`.
pub(super) fn parse_snapshot_statement(
    parser: &mut DFParser<'_>,
) -> Result<Option<QuiverStatement>> {
    let first = parser.parser.peek_token_ref().token.clone();
    let keyword = match &first {
        Token::Word(w) => w.keyword,
        _ => return Ok(None),
    };
    let statement = match keyword {
        Keyword::CREATE if second_word_is(parser, "snapshot") => {
            let p = &mut parser.parser;
            p.next_token();
            p.next_token();
            let name = parse_snapshot_name(parser)?;
            let p = &mut parser.parser;
            p.expect_keyword_is(Keyword::ON)?;
            let table = p.parse_object_name(false)?;
            let comment = if p.parse_keyword(Keyword::COMMENT) {
                let _ = p.consume_token(&Token::Eq);
                Some(p.parse_literal_string()?)
            } else {
                None
            };
            QuiverStatement::CreateSnapshot {
                name,
                table,
                comment,
            }
        }
        Keyword::DROP if second_word_is(parser, "snapshot") => {
            let p = &mut parser.parser;
            p.next_token();
            p.next_token();
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = parse_snapshot_name(parser)?;
            let p = &mut parser.parser;
            p.expect_keyword_is(Keyword::ON)?;
            let table = p.parse_object_name(false)?;
            QuiverStatement::DropSnapshot {
                name,
                table,
                if_exists,
            }
        }
        Keyword::SHOW if second_word_is(parser, "snapshots") => {
            let p = &mut parser.parser;
            p.next_token();
            p.next_token();
            let table = if p
                .parse_one_of_keywords(&[Keyword::ON, Keyword::FROM, Keyword::IN])
                .is_some()
            {
                Some(p.parse_object_name(false)?)
            } else {
                None
            };
            QuiverStatement::ShowSnapshots { table }
        }
        Keyword::DESCRIBE | Keyword::DESC if second_word_is(parser, "snapshot") => {
            let p = &mut parser.parser;
            p.next_token();
            p.next_token();
            let name = parse_snapshot_name(parser)?;
            let p = &mut parser.parser;
            p.expect_keyword_is(Keyword::ON)?;
            let table = p.parse_object_name(false)?;
            QuiverStatement::DescribeSnapshot { name, table }
        }
        _ => return Ok(None),
    };
    Ok(Some(statement))
}
