//! Scalar index DDL: `CREATE INDEX ... USING BTREE | BITMAP | LABEL_LIST (column)`.
//!
//! Lance's scanner evaluates a filter on an indexed column through the index rather than by
//! reading the column (pgvector users put a B-tree on the columns they filter by, as here). Like
//! vector indices, a scalar index is built over the collection's current version and recorded in
//! a new one; rows written afterwards are scanned until `OPTIMIZE` folds them in.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{plan_err, Result};
use datafusion::dataframe::DataFrame;
use lance_index::scalar::{BuiltinIndexType, ScalarIndexParams};
use lance_index::IndexType;

use super::statement::CreateIndex;
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
        let target = self.index_target(create).await?;
        if let Some(reason) = kind.refuses(&create.column, target.field.data_type()) {
            return plan_err!("{reason}");
        }
        self.build_index(create, target, kind.index_type(), &kind.params())
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
