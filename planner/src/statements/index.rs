//! Index DDL: `CREATE INDEX ... USING <vector type> (column [opclass]) WITH (...)` (scalar
//! types in `scalar_index`), `DROP INDEX`, `SHOW INDEXES`.
//!
//! Indices are Lance's, built over the collection's current version and recorded in a new version.
//! Rows written afterwards are not in the index; searches cover them exactly (Lance merges both).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{plan_err, Result};
use datafusion::dataframe::DataFrame;
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;
use lance::index::vector::VectorIndexParams;
use lance::index::DatasetIndexExt;
use lance::Dataset;
use lance_index::vector::hnsw::builder::HnswBuildParams;
use lance_index::vector::ivf::IvfBuildParams;
use lance_index::vector::pq::PQBuildParams;
use lance_index::vector::sq::builder::SQBuildParams;
use lance_index::{IndexParams, IndexType};
use lance_linalg::distance::DistanceType;
use quiver_catalog::indices::{scalar_indices, vector_indices};
use quiver_catalog::key_index::KEY_INDEX;
use quiver_catalog::CollectionRecord;

use super::scalar_index::ScalarKind;
use super::statement::{CreateIndex, QuiverStatement};
use super::tokens::{normalize, option_value};
use crate::error::{external, PlannerError};
use crate::progress::IndexProgress;
use crate::session::QuiverSession;
use crate::sql::types::vector_dimension;

/// What `CREATE INDEX` builds on.
pub(super) struct IndexTarget {
    /// The collection.
    pub(super) record: CollectionRecord,
    /// Its current version.
    pub(super) dataset: Dataset,
    /// The indexed column.
    pub(super) field: Field,
}

/// The index kinds Quiver builds (all IVF-partitioned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Flat,
    Pq,
    Sq,
    HnswFlat,
    HnswSq,
    HnswPq,
}

impl Kind {
    fn parse(using: &str) -> Result<(Self, bool)> {
        Ok(match using.to_ascii_lowercase().as_str() {
            "ivf_flat" | "ivfflat" => (Self::Flat, false),
            "ivf_pq" => (Self::Pq, false),
            "ivf_sq" => (Self::Sq, false),
            "ivf_hnsw_flat" => (Self::HnswFlat, false),
            "ivf_hnsw_sq" => (Self::HnswSq, false),
            "ivf_hnsw_pq" => (Self::HnswPq, false),
            // pgvector's HNSW: one graph over all rows.
            "hnsw" => (Self::HnswSq, true),
            other => {
                return plan_err!(
                    "unknown index type '{other}'; known: IVF_FLAT (ivfflat), IVF_PQ, IVF_SQ, IVF_HNSW_FLAT, IVF_HNSW_SQ (hnsw), IVF_HNSW_PQ for vectors, BTREE, BITMAP, LABEL_LIST for other columns"
                )
            }
        })
    }

    fn index_type(self) -> IndexType {
        match self {
            Self::Flat => IndexType::IvfFlat,
            Self::Pq => IndexType::IvfPq,
            Self::Sq => IndexType::IvfSq,
            Self::HnswFlat => IndexType::IvfHnswFlat,
            Self::HnswSq => IndexType::IvfHnswSq,
            Self::HnswPq => IndexType::IvfHnswPq,
        }
    }

    fn has_pq(self) -> bool {
        matches!(self, Self::Pq | Self::HnswPq)
    }

    fn has_sq(self) -> bool {
        matches!(self, Self::Sq | Self::HnswSq)
    }

    fn has_hnsw(self) -> bool {
        matches!(self, Self::HnswFlat | Self::HnswSq | Self::HnswPq)
    }

    /// The `WITH` parameters this kind accepts.
    fn parameters(self) -> Vec<&'static str> {
        let mut out = vec!["metric", "num_partitions", "max_iterations", "sample_rate"];
        if self.has_pq() {
            out.extend(["num_sub_vectors", "num_bits"]);
        }
        if self.has_sq() {
            out.push("num_bits");
        }
        if self.has_hnsw() {
            out.extend(["m", "ef_construction", "max_level"]);
        }
        out
    }
}

fn parse_metric(value: &str) -> Result<DistanceType> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "l2" | "euclidean" | "vector_l2_ops" => DistanceType::L2,
        "cosine" | "vector_cosine_ops" => DistanceType::Cosine,
        "dot" | "inner_product" | "ip" | "vector_ip_ops" => DistanceType::Dot,
        other => return plan_err!("unknown metric '{other}'; known: l2, cosine, dot"),
    })
}

fn number(options: &BTreeMap<&str, &str>, key: &str) -> Result<Option<usize>> {
    match options.get(key) {
        None => Ok(None),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => plan_err!("index parameter {key} must be a positive integer, got '{v}'"),
        },
    }
}

/// The largest divisor of `dim` that is at most `dim / 8` (at least 1): the default number of
/// PQ sub-vectors, each of about 8 dimensions.
fn default_sub_vectors(dim: usize) -> usize {
    (1..=(dim / 8).max(1))
        .rev()
        .find(|d| dim.is_multiple_of(*d))
        .unwrap_or(1)
}

fn index_params(
    kind: Kind,
    single_partition: bool,
    metric: DistanceType,
    dim: usize,
    options: &BTreeMap<&str, &str>,
) -> Result<VectorIndexParams> {
    let mut ivf = match number(options, "num_partitions")? {
        Some(n) => IvfBuildParams::new(n),
        None if single_partition => IvfBuildParams::new(1),
        None => IvfBuildParams::default(),
    };
    if let Some(n) = number(options, "max_iterations")? {
        ivf.max_iters = n;
    }
    if let Some(n) = number(options, "sample_rate")? {
        ivf.sample_rate = n;
    }
    let num_bits = number(options, "num_bits")?;
    let pq = || -> Result<PQBuildParams> {
        let sub_vectors = number(options, "num_sub_vectors")?.unwrap_or(default_sub_vectors(dim));
        if !dim.is_multiple_of(sub_vectors) {
            return plan_err!(
                "num_sub_vectors ({sub_vectors}) must divide the vector dimension ({dim})"
            );
        }
        Ok(PQBuildParams::new(sub_vectors, num_bits.unwrap_or(8)))
    };
    let sq = || -> Result<SQBuildParams> {
        let bits = num_bits.unwrap_or(8);
        if bits != 8 && bits != 4 {
            return plan_err!("num_bits for scalar quantization must be 4 or 8, got {bits}");
        }
        Ok(SQBuildParams {
            num_bits: bits as u16,
            ..Default::default()
        })
    };
    let hnsw = || -> Result<HnswBuildParams> {
        let mut params = HnswBuildParams::default();
        if let Some(m) = number(options, "m")? {
            if m < 4 {
                return plan_err!("HNSW parameter m must be at least 4, got {m}");
            }
            params = params.num_edges(m);
        }
        if let Some(ef) = number(options, "ef_construction")? {
            params = params.ef_construction(ef);
        }
        if let Some(level) = number(options, "max_level")? {
            params = params.max_level(u16::try_from(level).unwrap_or(u16::MAX));
        }
        Ok(params)
    };
    Ok(match kind {
        Kind::Flat => VectorIndexParams::with_ivf_flat_params(metric, ivf),
        Kind::Pq => VectorIndexParams::with_ivf_pq_params(metric, ivf, pq()?),
        Kind::Sq => VectorIndexParams::with_ivf_sq_params(metric, ivf, sq()?),
        Kind::HnswFlat => VectorIndexParams::ivf_hnsw(metric, ivf, hnsw()?),
        Kind::HnswSq => VectorIndexParams::with_ivf_hnsw_sq_params(metric, ivf, hnsw()?, sq()?),
        Kind::HnswPq => VectorIndexParams::with_ivf_hnsw_pq_params(metric, ivf, hnsw()?, pq()?),
    })
}

impl QuiverSession {
    /// `CREATE INDEX`: builds a Lance vector or scalar index over the collection's current
    /// version.
    pub(crate) async fn create_index(&self, create: &CreateIndex) -> Result<DataFrame> {
        let Some(using) = &create.using else {
            return plan_err!(
                "CREATE INDEX needs USING <type>: IVF_FLAT, IVF_PQ, IVF_SQ, IVF_HNSW_FLAT, IVF_HNSW_SQ or IVF_HNSW_PQ for vectors, BTREE, BITMAP or LABEL_LIST for other columns"
            );
        };
        if let Some(kind) = ScalarKind::parse(using) {
            return self.create_scalar_index(create, kind).await;
        }
        let (kind, single_partition) = Kind::parse(using)?;
        let options: BTreeMap<&str, &str> = create
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let known = kind.parameters();
        if let Some(unknown) = options.keys().find(|k| !known.contains(k)) {
            return plan_err!(
                "unknown parameter '{unknown}' for {using}; known: {}",
                known.join(", ")
            );
        }
        let metric = match (options.get("metric"), &create.operator_class) {
            (Some(m), None) => parse_metric(m)?,
            (None, Some(class)) => parse_metric(class)?,
            (None, None) => DistanceType::L2,
            (Some(m), Some(class)) => {
                let (a, b) = (parse_metric(m)?, parse_metric(class)?);
                if a != b {
                    return plan_err!("metric '{m}' contradicts operator class '{class}'");
                }
                a
            }
        };
        let target = self.index_target(create).await?;
        let Some(dim) = vector_dimension(target.field.data_type()) else {
            return plan_err!(
                "column '{}' is not a vector column; vector indices need VECTOR(n) or HALFVEC(n)",
                create.column
            );
        };
        let params = index_params(kind, single_partition, metric, dim, &options)?;
        self.build_index(create, target, kind.index_type(), &params)
            .await
    }

    /// The collection `CREATE INDEX` names, its current version and the indexed column.
    pub(super) async fn index_target(&self, create: &CreateIndex) -> Result<IndexTarget> {
        let (record, dataset) = self.open_collection(&create.table).await?;
        let schema = Schema::from(dataset.schema());
        let Ok(field) = schema.field_with_name(&create.column) else {
            return plan_err!(
                "column '{}' does not exist in '{}'",
                create.column,
                record.qualified_name()
            );
        };
        let field = field.clone();
        Ok(IndexTarget {
            record,
            dataset,
            field,
        })
    }

    /// Builds the index `create` asks for on `target` with Lance's `index_type` and `params`,
    /// reporting progress; an index of the same name is an error, or nothing to do with
    /// `IF NOT EXISTS`.
    pub(super) async fn build_index(
        &self,
        create: &CreateIndex,
        target: IndexTarget,
        index_type: IndexType,
        params: &dyn IndexParams,
    ) -> Result<DataFrame> {
        let IndexTarget {
            record,
            mut dataset,
            ..
        } = target;
        let name = create
            .name
            .clone()
            .unwrap_or_else(|| format!("{}_idx", create.column));
        if name == KEY_INDEX {
            return plan_err!("index name '{name}' is reserved for the primary key's index");
        }
        if index_names(&dataset).await?.contains(&name) {
            if create.if_not_exists {
                return self.done();
            }
            return Err(PlannerError::Invalid(format!(
                "index '{name}' already exists on '{}'",
                record.qualified_name()
            ))
            .into());
        }
        let columns = [create.column.as_str()];
        let mut builder = dataset
            .create_index_builder(&columns, index_type, params)
            .name(name)
            .replace(false);
        if let Some(listener) = self.progress() {
            builder = builder.progress(Arc::new(IndexProgress(listener)));
        }
        builder.await?;
        self.done()
    }

    /// The collection `table`, or every collection of the current database.
    async fn collections_named(
        &self,
        table: Option<&ObjectName>,
    ) -> Result<Vec<quiver_catalog::CollectionRecord>> {
        Ok(match table {
            Some(t) => {
                let (database, collection) = self.resolve(t)?;
                vec![self
                    .catalog()
                    .collection(&database, &collection)
                    .await
                    .map_err(external)?]
            }
            None => {
                let state = self.catalog().state().await.map_err(external)?;
                state
                    .collections_in(&self.current_database())
                    .into_iter()
                    .cloned()
                    .collect()
            }
        })
    }

    /// `DROP INDEX [IF EXISTS] name [ON table]`: without a table, the current database's
    /// collections are searched for the name.
    pub(crate) async fn drop_index(
        &self,
        name: &str,
        table: Option<&ObjectName>,
        if_exists: bool,
    ) -> Result<DataFrame> {
        let candidates = self.collections_named(table).await?;
        let mut owners = Vec::new();
        for record in candidates {
            let dataset = self
                .catalog()
                .open_dataset(&record, None)
                .await
                .map_err(external)?;
            if index_names(&dataset).await?.iter().any(|n| n == name) {
                owners.push((record, dataset));
            }
        }
        match owners.len() {
            0 if if_exists => self.done(),
            0 => Err(PlannerError::Invalid(format!("index '{name}' does not exist")).into()),
            1 => {
                let (_, mut dataset) = owners.remove(0);
                dataset.drop_index(name).await?;
                self.done()
            }
            _ => plan_err!(
                "index name '{name}' is used by several collections ({}); add ON <table>",
                owners
                    .iter()
                    .map(|(r, _)| r.qualified_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// `SHOW INDEXES [FROM table]`.
    pub(crate) async fn show_indexes(&self, table: Option<&ObjectName>) -> Result<DataFrame> {
        let records = self.collections_named(table).await?;
        let mut rows: Vec<[String; 4]> = Vec::new();
        let mut metrics: Vec<Option<String>> = Vec::new();
        let mut indexed = Vec::new();
        for record in records {
            let dataset = self
                .catalog()
                .open_dataset(&record, None)
                .await
                .map_err(external)?;
            for ix in vector_indices(&dataset).await.map_err(external)? {
                rows.push([record.qualified_name(), ix.name, ix.column, ix.index_type]);
                metrics.push(Some(ix.metric));
                indexed.push(ix.rows_indexed);
            }
            for ix in scalar_indices(&dataset).await.map_err(external)? {
                rows.push([record.qualified_name(), ix.name, ix.column, ix.index_type]);
                metrics.push(None);
                indexed.push(ix.rows_indexed);
            }
        }
        let column = |i: usize| StringArray::from_iter_values(rows.iter().map(|r| r[i].as_str()));
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("table", DataType::Utf8, false),
                Field::new("name", DataType::Utf8, false),
                Field::new("column", DataType::Utf8, false),
                Field::new("type", DataType::Utf8, false),
                Field::new("metric", DataType::Utf8, true),
                Field::new("rows_indexed", DataType::UInt64, false),
            ])),
            vec![
                Arc::new(column(0)),
                Arc::new(column(1)),
                Arc::new(column(2)),
                Arc::new(column(3)),
                Arc::new(StringArray::from(metrics)),
                Arc::new(UInt64Array::from(indexed)),
            ],
        )?;
        self.result(batch)
    }
}

/// The names of the indices of `dataset`'s version a user built, vector and scalar.
async fn index_names(dataset: &Dataset) -> Result<Vec<String>> {
    let vector = vector_indices(dataset).await.map_err(external)?;
    let scalar = scalar_indices(dataset).await.map_err(external)?;
    let vector = vector.into_iter().map(|ix| ix.name);
    Ok(vector.chain(scalar.into_iter().map(|ix| ix.name)).collect())
}

/// `SHOW INDEX|INDEXES|INDICES [FROM|ON|IN table]`.
pub(super) fn parse_show_indexes(parser: &mut DFParser<'_>) -> Result<Option<QuiverStatement>> {
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

/// `CREATE INDEX` as DataFusion's parser read it, checked and turned into [`CreateIndex`].
pub(super) fn parse_create_index(create: &ast::CreateIndex) -> Result<QuiverStatement> {
    if create.unique {
        return plan_err!(
            "an index cannot be UNIQUE; a PRIMARY KEY keeps a column's values unique"
        );
    }
    if let Some(predicate) = &create.predicate {
        return plan_err!(
            "partial indices (WHERE {predicate}) are not supported; filter in the query, which \
             runs before the search"
        );
    }
    if !create.include.is_empty() {
        return plan_err!("an index cannot INCLUDE columns");
    }
    let [column] = create.columns.as_slice() else {
        return plan_err!("an index covers exactly one column");
    };
    let ast::Expr::Identifier(ident) = &column.column.expr else {
        return plan_err!("an index covers a column, not '{}'", column.column.expr);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_vectors_default_to_about_eight_dimensions_each() {
        assert_eq!(default_sub_vectors(128), 16);
        assert_eq!(default_sub_vectors(384), 48);
        assert_eq!(default_sub_vectors(4), 1);
        assert_eq!(default_sub_vectors(100), 10);
    }

    #[test]
    fn unknown_types_and_metrics_are_named() {
        let err = Kind::parse("gist").unwrap_err().to_string();
        assert!(err.contains("unknown index type 'gist'"), "{err}");
        assert!(err.contains("BTREE, BITMAP, LABEL_LIST"), "{err}");
        let err = parse_metric("hamming").unwrap_err().to_string();
        assert!(err.contains("unknown metric 'hamming'"), "{err}");
        assert_eq!(Kind::parse("HNSW").unwrap(), (Kind::HnswSq, true));
        assert!(Kind::Pq.parameters().contains(&"num_sub_vectors"));
        assert!(!Kind::Flat.parameters().contains(&"m"));
    }
}
