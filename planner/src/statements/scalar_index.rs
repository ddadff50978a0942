//! Scalar index DDL: `CREATE INDEX ... USING BTREE | BITMAP | LABEL_LIST (column)`.
//!
//! Lance's scanner evaluates a filter on an indexed column through the index rather than by
//! reading the column (pgvector users put a B-tree on the columns they filter by, as here). Like
//! vector indices, a scalar index is built over the collection's current version and recorded in
//! a new one; rows written afterwards are scanned until `OPTIMIZE` folds them in.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{plan_err, Result};
use datafusion::dataframe::DataFrame;
use lance::index::DatasetIndexExt;
use lance_index::scalar::{BuiltinIndexType, ScalarIndexParams};
use lance_index::IndexType;
use quiver_catalog::indices::{scalar_indices, vector_indices};
use quiver_catalog::key_index::KEY_INDEX;

use super::statement::CreateIndex;
use crate::error::{external, PlannerError};
use crate::progress::IndexProgress;
use crate::session::QuiverSession;
use crate::sql::types::vector_dimension;

/// The scalar index kinds Quiver builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ScalarKind {
    /// A B-tree of the column's values: equality and range filters on any ordered column.
    BTree,
    /// A bitmap of the rows of each distinct value: equality and `IN` on columns of few values.
    Bitmap,
    /// A bitmap of the rows of each list element: `array_has` filters on list columns.
    LabelList,
}

impl ScalarKind {
    /// The kind `USING using` names, if it is a scalar one.
    pub(super) fn parse(using: &str) -> Option<Self> {
        match using.to_ascii_lowercase().as_str() {
            "btree" => Some(Self::BTree),
            "bitmap" => Some(Self::Bitmap),
            "label_list" | "labellist" => Some(Self::LabelList),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::BTree => "BTREE",
            Self::Bitmap => "BITMAP",
            Self::LabelList => "LABEL_LIST",
        }
    }

    fn index_type(self) -> IndexType {
        match self {
            Self::BTree => IndexType::BTree,
            Self::Bitmap => IndexType::Bitmap,
            Self::LabelList => IndexType::LabelList,
        }
    }

    fn params(self) -> ScalarIndexParams {
        ScalarIndexParams::for_builtin(match self {
            Self::BTree => BuiltinIndexType::BTree,
            Self::Bitmap => BuiltinIndexType::Bitmap,
            Self::LabelList => BuiltinIndexType::LabelList,
        })
    }

    /// Why a column of `data_type` cannot take this kind, if it cannot.
    fn refuses(self, column: &str, data_type: &DataType) -> Option<String> {
        let list = matches!(data_type, DataType::List(_) | DataType::LargeList(_));
        if vector_dimension(data_type).is_some() {
            return Some(format!(
                "column '{column}' is a vector column; {} indexes scalar columns, and vectors \
                 take a vector index (USING hnsw, IVF_PQ, ...)",
                self.name()
            ));
        }
        match self {
            Self::LabelList if !list => Some(format!(
                "LABEL_LIST indexes list columns; column '{column}' is {data_type}"
            )),
            Self::BTree | Self::Bitmap if list || data_type.is_nested() => Some(format!(
                "{} indexes columns of single values; column '{column}' is {data_type} \
                 (a list column takes LABEL_LIST)",
                self.name()
            )),
            _ => None,
        }
    }
}

impl QuiverSession {
    /// `CREATE INDEX ... USING <scalar kind> (column)`.
    pub(super) async fn create_scalar_index(
        &self,
        create: &CreateIndex,
        kind: ScalarKind,
    ) -> Result<DataFrame> {
        if let Some((key, _)) = create.options.first() {
            return plan_err!("{} takes no parameters, got '{key}'", kind.name());
        }
        if let Some(class) = &create.operator_class {
            return plan_err!(
                "{} takes no operator class, got '{class}'; operator classes name the metric of a vector index",
                kind.name()
            );
        }
        let (database, table) = self.resolve(&create.table)?;
        let record = self
            .catalog()
            .collection(&database, &table)
            .await
            .map_err(external)?;
        let mut dataset = self
            .catalog()
            .open_dataset(&record, None)
            .await
            .map_err(external)?;
        let schema = Schema::from(dataset.schema());
        let Ok(field) = schema.field_with_name(&create.column) else {
            return plan_err!(
                "column '{}' does not exist in '{}'",
                create.column,
                record.qualified_name()
            );
        };
        if let Some(reason) = kind.refuses(&create.column, field.data_type()) {
            return plan_err!("{reason}");
        }
        let name = create
            .name
            .clone()
            .unwrap_or_else(|| format!("{}_idx", create.column));
        if name == KEY_INDEX {
            return plan_err!("index name '{name}' is reserved for the primary key's index");
        }
        let vector = vector_indices(&dataset).await.map_err(external)?;
        let scalar = scalar_indices(&dataset).await.map_err(external)?;
        let taken = vector.iter().map(|ix| &ix.name);
        if taken
            .chain(scalar.iter().map(|ix| &ix.name))
            .any(|n| *n == name)
        {
            if create.if_not_exists {
                return self.done();
            }
            return Err(PlannerError::Invalid(format!(
                "index '{name}' already exists on '{}'",
                record.qualified_name()
            ))
            .into());
        }
        let params = kind.params();
        let columns = [create.column.as_str()];
        let mut builder = dataset
            .create_index_builder(&columns, kind.index_type(), &params)
            .name(name)
            .replace(false);
        if let Some(listener) = self.progress() {
            builder = builder.progress(Arc::new(IndexProgress(listener)));
        }
        builder.await?;
        self.done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn scalar_kinds_take_the_columns_they_index() {
        assert_eq!(ScalarKind::parse("BTREE"), Some(ScalarKind::BTree));
        assert_eq!(ScalarKind::parse("label_list"), Some(ScalarKind::LabelList));
        assert_eq!(ScalarKind::parse("hnsw"), None);
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
        let vector =
            DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, true)), 4);
        assert!(ScalarKind::BTree.refuses("c", &DataType::Utf8).is_none());
        assert!(ScalarKind::Bitmap.refuses("c", &DataType::Int64).is_none());
        assert!(ScalarKind::LabelList.refuses("c", &list).is_none());
        let refusal = ScalarKind::LabelList.refuses("c", &DataType::Utf8).unwrap();
        assert!(
            refusal.contains("LABEL_LIST indexes list columns"),
            "{refusal}"
        );
        let refusal = ScalarKind::BTree.refuses("tags", &list).unwrap();
        assert!(refusal.contains("takes LABEL_LIST"), "{refusal}");
        let refusal = ScalarKind::Bitmap.refuses("embedding", &vector).unwrap();
        assert!(refusal.contains("is a vector column"), "{refusal}");
    }
}
