//! [`QuiverStatement`]: one parsed statement, either DataFusion's or one Quiver runs itself.

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, ObjectName};

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
    /// `OPTIMIZE [TABLE] name [WITH (retrain = true)]`: compacts the collection and brings its
    /// vector indices up to date with its rows, as a job.
    Optimize {
        /// The collection.
        table: ObjectName,
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
    /// `EXPLAIN` of a job statement (`RESTORE`, `VACUUM`, `OPTIMIZE`): its plan, not run.
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

/// A parsed `CREATE INDEX`.
#[derive(Debug, Clone)]
pub struct CreateIndex {
    /// Index name (default `<column>_idx`).
    pub name: Option<String>,
    /// The collection.
    pub table: ObjectName,
    /// `USING` type, as written.
    pub using: Option<String>,
    /// The indexed column.
    pub column: String,
    /// pgvector operator class (`vector_l2_ops`, `vector_cosine_ops`, `vector_ip_ops`).
    pub operator_class: Option<String>,
    /// `WITH (...)` parameters, keys lower-cased.
    pub options: Vec<(String, String)>,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
}
