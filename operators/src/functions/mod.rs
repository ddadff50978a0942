//! Vector functions for SQL, each under its pgvector name with its DuckDB name as an alias.
//!
//! | function | alias | value |
//! |---|---|---|
//! | `l2_distance(a, b)` | `array_distance` | Euclidean distance |
//! | `cosine_distance(a, b)` | `array_cosine_distance` | `1 - cos(a, b)`; NaN for a zero vector |
//! | `inner_product(a, b)` | `array_inner_product` | `a . b` |
//! | `negative_inner_product(a, b)` | `array_negative_inner_product` | `-(a . b)` |
//! | `l2_norm(a)` | `vector_norm` | `|a|` |
//! | `vector_dims(a)` | | number of dimensions |
//! | `to_vector(x [, dim [, column]])` | | text `'[1,2]'` or a list as a vector |
//!
//! Arguments are vector columns (`FixedSizeList<Float32|Float16>`), vector literals
//! (`[0.1, 0.2]`, any numeric list) or parameters. A NULL argument gives NULL; vectors of different
//! lengths, non-vector arguments and non-finite query literals are errors. A call's column name
//! shows a literal vector by its values, and one of more than 8 values by its first 4, its length
//! and a hash (`l2_distance(docs.embedding,[0.1,0.2,0.3,0.4,...384 values #9c0f3a1d2b4e5f67])`).

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, ScalarUDF};

mod distance;
mod norm;
mod schema_name;
pub mod to_vector;

pub use distance::{DistanceFunction, DistanceUdf};
pub use norm::{L2NormUdf, VectorDimsUdf};
pub use to_vector::ToVectorUdf;

/// Every vector function, ready to register with a session.
pub fn all() -> Vec<Arc<ScalarUDF>> {
    let mut out: Vec<Arc<ScalarUDF>> = DistanceFunction::ALL
        .iter()
        .map(|f| Arc::new(ScalarUDF::from(DistanceUdf::new(*f))))
        .collect();
    out.push(Arc::new(ScalarUDF::from(L2NormUdf::new())));
    out.push(Arc::new(ScalarUDF::from(VectorDimsUdf::new())));
    out.push(Arc::new(ScalarUDF::from(ToVectorUdf::new())));
    out
}

/// Whether `expr` calls one of these functions. A scan that pushes filters into Lance keeps such
/// filters in DataFusion, where k-NN and range search see them.
pub fn calls_vector_function(expr: &Expr) -> bool {
    let names: Vec<String> = all()
        .iter()
        .flat_map(|f| std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()))
        .collect();
    let mut found = false;
    let _ = expr.apply(|e| {
        if let Expr::ScalarFunction(f) = e {
            if names.iter().any(|n| n == f.func.name()) {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}
