//! Quiver's SQL statements: what DataFusion plans, plus the statements Quiver runs itself.
//!
//! [`parse_statements`] splits a script into statements. Collection DDL that must reach the
//! catalog (`CREATE/DROP DATABASE`, `DROP TABLE ... [CASCADE]`), `DESCRIBE`, `SHOW DATABASES` and
//! `COPY ... FROM` become [`QuiverStatement`] variants; everything else is handed to DataFusion
//! unchanged (queries, `INSERT`, `DELETE`, `UPDATE`, `CREATE TABLE`, `EXPLAIN`, `SET`, `SHOW`).

use datafusion::common::{plan_err, Result};
use datafusion::sql::parser::{DFParser, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    self, DescribeAlias, ObjectName, ObjectType, SchemaName, Statement as SqlStatement,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::dialect::QuiverDialect;
use crate::error::PlannerError;
use crate::index::CreateIndex;
use crate::session::normalize;

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum QuiverStatement {
    /// A statement DataFusion plans (and Quiver may intercept after planning).
    DataFusion(Box<DFStatement>),
    /// `CREATE DATABASE|SCHEMA [IF NOT EXISTS] name`.
    CreateDatabase {
        /// The database name.
        name: ast::Ident,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
    },
    /// `DROP DATABASE|SCHEMA [IF EXISTS] name [CASCADE]`.
    DropDatabase {
        /// The database name.
        name: ast::Ident,
        /// `IF EXISTS`.
        if_exists: bool,
        /// `CASCADE`.
        cascade: bool,
    },
    /// `DROP TABLE [IF EXISTS] name [, ...] [CASCADE]`.
    DropTable {
        /// The collections.
        names: Vec<ObjectName>,
        /// `IF EXISTS`.
        if_exists: bool,
        /// `CASCADE`: drop the collections' snapshots too.
        cascade: bool,
    },
    /// `SHOW DATABASES` / `SHOW SCHEMAS`.
    ShowDatabases,
    /// `DESCRIBE name`.
    Describe {
        /// The collection.
        name: ObjectName,
    },
    /// `CREATE INDEX ... USING <type> (column [opclass]) [WITH (...)]`.
    CreateIndex(CreateIndex),
    /// `DROP INDEX [IF EXISTS] name [ON table]`.
    DropIndex {
        /// The index.
        name: String,
        /// Its collection, if given.
        table: Option<ObjectName>,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW quiver.<setting>`: Quiver's own session settings.
    ShowSetting {
        /// The setting, without the `quiver.` prefix.
        name: String,
    },
    /// `SHOW INDEXES [FROM|ON|IN table]`.
    ShowIndexes {
        /// One collection, or all of the current database.
        table: Option<ObjectName>,
    },
    /// `CREATE SNAPSHOT name ON table [COMMENT 'text']`.
    CreateSnapshot {
        /// The snapshot name.
        name: String,
        /// The collection.
        table: ObjectName,
        /// The comment.
        comment: Option<String>,
    },
    /// `DROP SNAPSHOT [IF EXISTS] name ON table`.
    DropSnapshot {
        /// The snapshot name.
        name: String,
        /// The collection.
        table: ObjectName,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW SNAPSHOTS [ON table]`.
    ShowSnapshots {
        /// One collection, or every collection.
        table: Option<ObjectName>,
    },
    /// `DESCRIBE SNAPSHOT name ON table`.
    DescribeSnapshot {
        /// The snapshot name.
        name: String,
        /// The collection.
        table: ObjectName,
    },
    /// `RESTORE SNAPSHOT s ON t TO target [IN DATABASE db] [WITH (mode = 'copy'|'zero_copy')]`,
    /// or `RESTORE TABLE t TO SNAPSHOT s` (in place).
    Restore {
        /// The snapshot.
        snapshot: String,
        /// Its collection.
        table: ObjectName,
        /// The new collection (none: in place).
        target: Option<ObjectName>,
        /// `IN DATABASE db`.
        target_database: Option<ast::Ident>,
        /// `WITH (...)` options.
        options: Vec<(String, String)>,
    },
    /// `VACUUM [table] [DRY RUN] [WITH (retention_seconds = n, grace_seconds = n,
    /// job_retention_seconds = n)]`.
    Vacuum {
        /// One collection, or everything.
        table: Option<ObjectName>,
        /// Report only.
        dry_run: bool,
        /// `WITH (...)` options.
        options: Vec<(String, String)>,
    },
    /// `SHOW JOBS`.
    ShowJobs,
    /// `CANCEL JOB id`.
    CancelJob {
        /// The job.
        id: u64,
    },
    /// `EXPLAIN` of a job statement (`RESTORE`, `VACUUM`): its plan, not run.
    ExplainJob(Box<QuiverStatement>),
    /// `ALTER TABLE name SET TBLPROPERTIES ('key' = 'value', ...)` or `ALTER TABLE name SET
    /// (key = 'value', ...)`: collection properties; a NULL value removes the key.
    SetProperties {
        /// The collection.
        name: ObjectName,
        /// Keys and values (`None` to remove).
        properties: Vec<(String, Option<String>)>,
    },
    /// `COPY name FROM 'path' [WITH (FORMAT parquet|csv, HEADER true, DELIMITER ',')]`.
    CopyFrom {
        /// The target collection.
        name: ObjectName,
        /// The file (or directory) to load.
        path: String,
        /// Options, keys lower-cased.
        options: Vec<(String, String)>,
    },
}

/// Parses a script of `;`-separated statements.
pub fn parse_statements(sql: &str) -> Result<Vec<QuiverStatement>> {
    let mut parser = DFParserBuilder::new(sql)
        .with_dialect(&QuiverDialect)
        .build()?;
    let mut out = Vec::new();
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {}
        if parser.parser.peek_token().token == Token::EOF {
            break;
        }
        out.push(parse_one(&mut parser)?);
        let next = parser.parser.peek_token();
        if next.token != Token::EOF && next.token != Token::SemiColon {
            return plan_err!(
                "expected ';' or the end of the statement, found '{}'",
                next.token
            );
        }
    }
    if out.is_empty() {
        return plan_err!("no SQL statement given");
    }
    Ok(out)
}

fn parse_one(parser: &mut DFParser<'_>) -> Result<QuiverStatement> {
    if parser.parser.peek_keyword(Keyword::COPY) && copy_is_from(parser) {
        return parse_copy_from(parser);
    }
    if let Some(statement) = parse_show_indexes(parser)? {
        return Ok(statement);
    }
    if let Some(statement) = parse_snapshot_statement(parser)? {
        return Ok(statement);
    }
    if let Some(statement) = parse_job_statement(parser)? {
        return Ok(statement);
    }
    let statement = parser.parse_statement()?;
    classify(statement)
}

/// `SHOW INDEX|INDEXES|INDICES [FROM|ON|IN table]`.
fn parse_show_indexes(parser: &mut DFParser<'_>) -> Result<Option<QuiverStatement>> {
    let p = &mut parser.parser;
    let is_indexes = matches!(&p.peek_nth_token_ref(1).token, Token::Word(w)
        if ["index", "indexes", "indices"].contains(&w.value.to_ascii_lowercase().as_str()));
    if !p.peek_keyword(Keyword::SHOW) || !is_indexes {
        return Ok(None);
    }
    p.next_token();
    p.next_token();
    let table = if p
        .parse_one_of_keywords(&[Keyword::FROM, Keyword::ON, Keyword::IN])
        .is_some()
    {
        Some(p.parse_object_name(false)?)
    } else {
        None
    };
    Ok(Some(QuiverStatement::ShowIndexes { table }))
}

/// Whether the word after the current token is `word` (unquoted, any case).
fn second_word_is(parser: &DFParser<'_>, word: &str) -> bool {
    matches!(&parser.parser.peek_nth_token_ref(1).token, Token::Word(w)
        if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// A snapshot name: an identifier, as written (normalized like any identifier).
fn parse_snapshot_name(parser: &mut DFParser<'_>) -> Result<String> {
    Ok(normalize(&parser.parser.parse_identifier()?))
}

/// `CREATE SNAPSHOT`, `DROP SNAPSHOT`, `SHOW SNAPSHOTS`, `DESCRIBE SNAPSHOT`.
fn parse_snapshot_statement(parser: &mut DFParser<'_>) -> Result<Option<QuiverStatement>> {
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

/// `WITH ( key = value [, ...] )`, if present; keys lower-cased.
fn parse_with_options(parser: &mut DFParser<'_>) -> Result<Vec<(String, String)>> {
    if !parser.parser.parse_keyword(Keyword::WITH) {
        return Ok(Vec::new());
    }
    parse_option_list(parser)
}

/// `( key [=] value [, ...] )`; keys lower-cased.
fn parse_option_list(parser: &mut DFParser<'_>) -> Result<Vec<(String, String)>> {
    let p = &mut parser.parser;
    let mut options = Vec::new();
    p.expect_token(&Token::LParen)?;
    loop {
        let key = p.parse_identifier()?.value.to_ascii_lowercase();
        let _ = p.consume_token(&Token::Eq);
        let value = match p.next_token().token {
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => s,
            Token::Number(n, _) => n,
            Token::Word(w) => w.value,
            other => return plan_err!("option '{key}': unexpected value '{other}'"),
        };
        options.push((key, value));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen)?;
    Ok(options)
}

fn first_word_is(parser: &DFParser<'_>, word: &str) -> bool {
    matches!(&parser.parser.peek_token_ref().token, Token::Word(w)
        if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// `RESTORE`, `VACUUM`, `SHOW JOBS`, `CANCEL JOB`, and `EXPLAIN` of the first two.
fn parse_job_statement(parser: &mut DFParser<'_>) -> Result<Option<QuiverStatement>> {
    if parser.parser.peek_keyword(Keyword::EXPLAIN)
        && (second_word_is(parser, "restore") || second_word_is(parser, "vacuum"))
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

fn option_value(expr: &ast::Expr) -> Option<String> {
    match expr {
        ast::Expr::Value(v) => Some(match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            ast::Value::Number(n, _) => n.to_string(),
            ast::Value::Boolean(b) => b.to_string(),
            other => other.to_string(),
        }),
        ast::Expr::Identifier(ident) => Some(ident.value.clone()),
        _ => None,
    }
}

fn create_index(create: &ast::CreateIndex) -> Result<QuiverStatement> {
    if create.unique {
        return plan_err!("a vector index cannot be UNIQUE");
    }
    if let Some(predicate) = &create.predicate {
        return plan_err!(
            "partial vector indices (WHERE {predicate}) are not supported; filter in the query, \
             which runs before the search"
        );
    }
    if !create.include.is_empty() {
        return plan_err!("a vector index cannot INCLUDE columns");
    }
    let [column] = create.columns.as_slice() else {
        return plan_err!("a vector index covers exactly one column");
    };
    let ast::Expr::Identifier(ident) = &column.column.expr else {
        return plan_err!(
            "a vector index covers a column, not '{}'",
            column.column.expr
        );
    };
    let mut options = Vec::new();
    for option in &create.with {
        let parsed = match option {
            ast::Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Eq,
                right,
            } => match (left.as_ref(), option_value(right)) {
                (ast::Expr::Identifier(key), Some(value)) => {
                    Some((key.value.to_ascii_lowercase(), value))
                }
                _ => None,
            },
            _ => None,
        };
        match parsed {
            Some(kv) => options.push(kv),
            None => return plan_err!("index options are written name = value, got '{option}'"),
        }
    }
    Ok(QuiverStatement::CreateIndex(CreateIndex {
        name: create.name.as_ref().map(|n| n.to_string()),
        table: create.table_name.clone(),
        using: create.using.as_ref().map(|u| u.to_string()),
        column: normalize(ident),
        operator_class: column.operator_class.as_ref().map(|c| c.to_string()),
        options,
        if_not_exists: create.if_not_exists,
    }))
}

/// Whether `COPY <name> FROM` follows (DataFusion parses only `COPY ... TO`).
fn copy_is_from(parser: &DFParser<'_>) -> bool {
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

fn parse_copy_from(parser: &mut DFParser<'_>) -> Result<QuiverStatement> {
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

/// The single identifier of a one-part name.
fn single_ident(name: &ObjectName) -> Option<ast::Ident> {
    match name.0.as_slice() {
        [part] => part.as_ident().cloned(),
        _ => None,
    }
}

/// `ALTER TABLE ... SET TBLPROPERTIES (...)` / `SET (...)` as [`QuiverStatement::SetProperties`];
/// any other `ALTER TABLE` is refused by name.
fn alter_table(alter: &ast::AlterTable) -> Result<QuiverStatement> {
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
        properties.push((key.value.clone(), value));
    }
    Ok(QuiverStatement::SetProperties {
        name: alter.name.clone(),
        properties,
    })
}

/// Turns DataFusion's parse into Quiver's statement.
fn classify(statement: DFStatement) -> Result<QuiverStatement> {
    let DFStatement::Statement(inner) = statement else {
        return Ok(QuiverStatement::DataFusion(Box::new(statement)));
    };
    match inner.as_ref() {
        SqlStatement::CreateIndex(create) => return create_index(create),
        SqlStatement::AlterTable(alter) => return alter_table(alter),
        SqlStatement::Drop {
            object_type: ObjectType::Index,
            if_exists,
            names,
            table,
            ..
        } => {
            let [name] = names.as_slice() else {
                return plan_err!("DROP INDEX drops one index at a time");
            };
            return Ok(QuiverStatement::DropIndex {
                name: name.to_string(),
                table: table.clone(),
                if_exists: *if_exists,
            });
        }
        _ => {}
    }
    let quiver = match inner.as_ref() {
        SqlStatement::CreateDatabase {
            db_name,
            if_not_exists,
            ..
        } => single_ident(db_name).map(|name| QuiverStatement::CreateDatabase {
            name,
            if_not_exists: *if_not_exists,
        }),
        SqlStatement::CreateSchema {
            schema_name: SchemaName::Simple(schema),
            if_not_exists,
            ..
        } => single_ident(schema).map(|name| QuiverStatement::CreateDatabase {
            name,
            if_not_exists: *if_not_exists,
        }),
        SqlStatement::Drop {
            object_type: ObjectType::Table,
            if_exists,
            names,
            cascade,
            ..
        } => Some(QuiverStatement::DropTable {
            names: names.clone(),
            if_exists: *if_exists,
            cascade: *cascade,
        }),
        SqlStatement::Drop {
            object_type: ObjectType::Schema | ObjectType::Database,
            if_exists,
            names,
            cascade,
            ..
        } => match names.as_slice() {
            [one] => single_ident(one).map(|name| QuiverStatement::DropDatabase {
                name,
                if_exists: *if_exists,
                cascade: *cascade,
            }),
            _ => None,
        },
        SqlStatement::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(".");
            name.strip_prefix("quiver.")
                .map(|setting| QuiverStatement::ShowSetting {
                    name: setting.to_string(),
                })
        }
        SqlStatement::ShowDatabases { .. } | SqlStatement::ShowSchemas { .. } => {
            Some(QuiverStatement::ShowDatabases)
        }
        SqlStatement::ExplainTable {
            describe_alias: DescribeAlias::Describe | DescribeAlias::Desc,
            table_name,
            ..
        } => Some(QuiverStatement::Describe {
            name: table_name.clone(),
        }),
        _ => None,
    };
    Ok(quiver
        .unwrap_or_else(|| QuiverStatement::DataFusion(Box::new(DFStatement::Statement(inner)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_split_into_statements() {
        let s = parse_statements("CREATE DATABASE a; SELECT 1;; DROP TABLE IF EXISTS a.t CASCADE")
            .unwrap();
        assert_eq!(s.len(), 3);
        assert!(matches!(s[0], QuiverStatement::CreateDatabase { .. }));
        assert!(matches!(s[1], QuiverStatement::DataFusion(_)));
        assert!(matches!(
            s[2],
            QuiverStatement::DropTable {
                if_exists: true,
                cascade: true,
                ..
            }
        ));
        assert!(parse_statements("  ;  ").is_err());
        assert!(parse_statements("SELECT 1 SELECT 2").is_err());
    }

    #[test]
    fn copy_from_parses_path_and_options() {
        let s = parse_statements(
            "COPY db.docs FROM '/tmp/x.csv' WITH (FORMAT csv, HEADER true, DELIMITER '|')",
        )
        .unwrap();
        let QuiverStatement::CopyFrom {
            name,
            path,
            options,
        } = &s[0]
        else {
            panic!("{s:?}");
        };
        assert_eq!(name.to_string(), "db.docs");
        assert_eq!(path, "/tmp/x.csv");
        assert_eq!(
            options,
            &vec![
                ("format".to_string(), "csv".to_string()),
                ("header".to_string(), "true".to_string()),
                ("delimiter".to_string(), "|".to_string())
            ]
        );
        // COPY ... TO stays DataFusion's.
        let s = parse_statements("COPY (SELECT 1) TO '/tmp/out.parquet'").unwrap();
        assert!(matches!(s[0], QuiverStatement::DataFusion(_)));
    }

    #[test]
    fn snapshot_statements_parse() {
        let s = parse_statements(
            "CREATE SNAPSHOT Nightly ON db.docs COMMENT 'before'; DROP SNAPSHOT IF EXISTS n ON docs;
             SHOW SNAPSHOTS; SHOW SNAPSHOTS ON docs; DESCRIBE SNAPSHOT n ON docs",
        )
        .unwrap();
        assert!(
            matches!(&s[0], QuiverStatement::CreateSnapshot { name, comment: Some(c), .. }
            if name == "nightly" && c == "before")
        );
        assert!(matches!(
            &s[1],
            QuiverStatement::DropSnapshot {
                if_exists: true,
                ..
            }
        ));
        assert!(matches!(
            &s[2],
            QuiverStatement::ShowSnapshots { table: None }
        ));
        assert!(matches!(
            &s[3],
            QuiverStatement::ShowSnapshots { table: Some(_) }
        ));
        assert!(matches!(&s[4], QuiverStatement::DescribeSnapshot { .. }));
        assert!(parse_statements("CREATE SNAPSHOT n docs").is_err());
    }

    #[test]
    fn job_statements_parse() {
        let s = parse_statements(
            "RESTORE SNAPSHOT n ON docs TO docs2 IN DATABASE other WITH (mode = 'zero_copy');
             RESTORE TABLE docs TO SNAPSHOT n; VACUUM; VACUUM docs DRY RUN;
             VACUUM DRY RUN WITH (grace_seconds = 0); SHOW JOBS; CANCEL JOB 7; EXPLAIN VACUUM",
        )
        .unwrap();
        assert!(
            matches!(&s[0], QuiverStatement::Restore { target: Some(_), target_database: Some(_), options, .. }
            if options == &vec![("mode".to_string(), "zero_copy".to_string())])
        );
        assert!(matches!(
            &s[1],
            QuiverStatement::Restore { target: None, .. }
        ));
        assert!(matches!(
            &s[2],
            QuiverStatement::Vacuum {
                table: None,
                dry_run: false,
                ..
            }
        ));
        assert!(matches!(
            &s[3],
            QuiverStatement::Vacuum {
                table: Some(_),
                dry_run: true,
                ..
            }
        ));
        assert!(
            matches!(&s[4], QuiverStatement::Vacuum { table: None, dry_run: true, options }
            if options.len() == 1)
        );
        assert!(matches!(&s[5], QuiverStatement::ShowJobs));
        assert!(matches!(&s[6], QuiverStatement::CancelJob { id: 7 }));
        assert!(matches!(&s[7], QuiverStatement::ExplainJob(_)));
        assert!(parse_statements("RESTORE SNAPSHOT n ON docs").is_err());
    }

    #[test]
    fn describe_and_show_databases_are_quivers() {
        let s = parse_statements("DESCRIBE docs; SHOW DATABASES; DROP SCHEMA x CASCADE").unwrap();
        assert!(matches!(s[0], QuiverStatement::Describe { .. }));
        assert!(matches!(s[1], QuiverStatement::ShowDatabases));
        assert!(matches!(
            s[2],
            QuiverStatement::DropDatabase { cascade: true, .. }
        ));
    }
}
