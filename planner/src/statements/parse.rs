//! Parsing a script into [`QuiverStatement`]s: each family's own statements first (`COPY ...
//! FROM`, `SHOW INDEXES`, snapshots, jobs), then DataFusion's parser, whose result is classified
//! into the statements Quiver runs itself or left to DataFusion.

use datafusion::common::{plan_err, Result};
use datafusion::sql::parser::{DFParser, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    self, DescribeAlias, ObjectName, ObjectType, SchemaName, Statement as SqlStatement,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::copy::{copy_is_from, parse_copy_from};
use super::ddl::alter_table;
use super::index::{parse_create_index, parse_show_indexes};
use super::jobs::parse_job_statement;
use super::limits::{check_nesting, check_script_size};
use super::snapshot::parse_snapshot_statement;
use super::statement::QuiverStatement;
use crate::sql::dialect::QuiverDialect;

/// Parses a script of `;`-separated statements.
pub fn parse_statements(sql: &str) -> Result<Vec<QuiverStatement>> {
    check_script_size(sql)?;
    check_nesting(sql)?;
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

/// The single identifier of a one-part name.
fn single_ident(name: &ObjectName) -> Option<ast::Ident> {
    match name.0.as_slice() {
        [part] => part.as_ident().cloned(),
        _ => None,
    }
}

/// Turns DataFusion's parse into Quiver's statement.
fn classify(statement: DFStatement) -> Result<QuiverStatement> {
    let DFStatement::Statement(inner) = statement else {
        return Ok(QuiverStatement::DataFusion(Box::new(statement)));
    };
    match inner.as_ref() {
        SqlStatement::CreateIndex(create) => return parse_create_index(create),
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
