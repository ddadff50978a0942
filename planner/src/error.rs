//! Errors of Quiver's SQL layer that are not the catalog's or the operators'.

use datafusion::error::DataFusionError;
use quiver_catalog::CatalogError;

/// Wraps a catalog error for DataFusion, keeping its type.
pub fn external(e: CatalogError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Errors raised while planning or running Quiver statements.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    /// An insert would duplicate a primary key.
    #[error("duplicate primary key in '{table}': {detail}")]
    DuplicateKey {
        /// The collection.
        table: String,
        /// Which key, as Lance reported it.
        detail: String,
    },
    /// A NOT NULL column received a NULL.
    #[error("column '{column}' of '{table}' is NOT NULL but the input holds NULL at row {row}")]
    NullInNotNullColumn {
        /// The collection.
        table: String,
        /// The column.
        column: String,
        /// 1-based row number in the input.
        row: usize,
    },
    /// `REPLACE INTO` (upsert) on a collection without a primary key.
    #[error(
        "'{table}' has no primary key, so REPLACE INTO (upsert) cannot match rows; use INSERT"
    )]
    UpsertWithoutKey {
        /// The collection.
        table: String,
    },
    /// A statement Quiver does not support.
    #[error("{0}")]
    Unsupported(String),
    /// A statement that is malformed or refers to something wrong.
    #[error("{0}")]
    Invalid(String),
    /// A statement larger than a limit allows (its text, an `IN` list).
    #[error("{0}")]
    LimitExceeded(String),
}

impl From<PlannerError> for DataFusionError {
    fn from(e: PlannerError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// How Lance's message begins when a filter it evaluates fails on a batch.
const LANCE_FILTER_FAILED: &str = "Error applying filter expression to batch: ";

/// `e` as the user's error it is, where it says that Lance's evaluation of a statement's filter
/// failed (a vector of the wrong dimension, a failed cast in the `WHERE` clause of a `DELETE`, or
/// of a query whose filter Lance applies while it scans): Lance reports that as an execution
/// error of its own, with the cause as text.
pub fn filter_failure(e: DataFusionError) -> DataFusionError {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = current {
        if let Some(lance::Error::Execution { message, .. }) = err.downcast_ref::<lance::Error>() {
            if let Some(cause) = message.strip_prefix(LANCE_FILTER_FAILED) {
                let cause = cause.strip_prefix("External error: ").unwrap_or(cause);
                return PlannerError::Invalid(cause.to_string()).into();
            }
        }
        current = err.source();
    }
    e
}

/// The message a user should see for `e`: Quiver's own error where one is in the chain (without
/// DataFusion's "External error:" wrapping), otherwise the root cause; [`redact`]ed.
pub fn user_message(e: &DataFusionError) -> String {
    redact(&unredacted_message(e))
}

fn unredacted_message(e: &DataFusionError) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(q) = err.downcast_ref::<quiver_catalog::CatalogError>() {
            return q.to_string();
        }
        if let Some(q) = err.downcast_ref::<quiver_operators::OperatorError>() {
            return q.to_string();
        }
        if let Some(q) = err.downcast_ref::<PlannerError>() {
            return q.to_string();
        }
        current = err.source();
    }
    match e.find_root() {
        DataFusionError::External(inner) => inner.to_string(),
        root => root.strip_backtrace(),
    }
}

/// Folders directly under a data root: a path through one of them is shown from there on.
const ROOT_FOLDERS: [&str; 3] = ["collections/", "snapshots/", "_catalog/"];

/// `message` without the paths of the machine it runs on: a path into the data root is shown
/// relative to the root (`/srv/quiver/collections/1f2e/data/x.lance` as
/// `collections/1f2e/data/x.lance`, for local and object store roots alike), and the source
/// locations Lance appends to its errors (`, /home/.../lance-io-14.0.2/src/local.rs:273:40`)
/// are removed.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, segment) in message.split(", ").enumerate() {
        if is_source_location(segment) {
            continue;
        }
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&root_relative(segment));
    }
    out
}

/// Whether `text` is a source location, `<path>/src/<file>.rs:<line>:<column>`.
fn is_source_location(text: &str) -> bool {
    let mut parts = text.trim_end().rsplitn(3, ':');
    let (Some(column), Some(line), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    digits(column) && digits(line) && file.ends_with(".rs") && file.contains("/src/")
}

/// `text` with each path through a data root folder cut to start at that folder: for messages,
/// and for plans, whose Lance scans name their dataset by its full path.
pub(crate) fn root_relative(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let found = ROOT_FOLDERS
            .iter()
            .filter_map(|folder| rest.find(&format!("/{folder}")))
            .min();
        let Some(slash) = found else {
            out.push_str(rest);
            return out;
        };
        // The path starts after the last delimiter before the folder.
        let start = rest[..slash]
            .rfind(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '(' | '=' | '`'))
            .map_or(0, |d| d + 1);
        out.push_str(&rest[..start]);
        rest = &rest[slash + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn messages_name_paths_from_the_data_root_and_no_source_locations() {
        assert_eq!(
            redact(
                "Not found: /tmp/x/root/collections/ab12/_refs/tags/t.json, \
                 /root/.cargo/registry/src/index.crates.io-1/lance-io-14.0.2/src/local.rs:273:40"
            ),
            "Not found: collections/ab12/_refs/tags/t.json"
        );
        assert_eq!(
            redact("cannot read 's3://bucket/prefix/snapshots/c/s/manifest.avro' (denied)"),
            "cannot read 'snapshots/c/s/manifest.avro' (denied)"
        );
        assert_eq!(
            redact("uri=tmp/q/collections/9f/data, projection=[id]"),
            "uri=collections/9f/data, projection=[id]"
        );
        // Nothing else changes.
        let plain = "column 'embedding' is VECTOR(4) but got a vector of 3 dimensions: [1, 2, 3]";
        assert_eq!(redact(plain), plain);
        assert_eq!(redact("a, b, c"), "a, b, c");
    }
}
