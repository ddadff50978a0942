//! Vectors written as text, as pgvector takes them: `'[1,2,3]'::VECTOR(3)`,
//! `CAST('[1,2,3]' AS HALFVEC(3))`, text arguments of the vector functions and operators
//! (`embedding <-> '[1,2,3]'`), and text inserted into or set in a vector column
//! (`INSERT INTO docs VALUES (1, '[1,2,3]')`, `UPDATE docs SET embedding = '[1,2,3]'`).
//!
//! Arrow has no cast from text to a fixed-size list, so each of these becomes a call of
//! `to_vector`, which parses the text (and takes numeric lists too) and, where the dimension is
//! known, refuses another length naming the column or the type. A `HALFVEC` is the `VECTOR`
//! cast to `f16`.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::LazyLock;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{DataFusionError, Result};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, CastKind, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, ObjectName, SetExpr, Statement, TableFactor, TableObject, Value,
    VisitorMut,
};

use super::rewrite::{function_call, rewrite_statement};
use super::types::vector_dimension;

/// The name of the conversion every rewrite calls.
const TO_VECTOR: &str = "to_vector";

/// The vector functions' names and aliases, lower-case: their text arguments are vectors.
static VECTOR_FUNCTIONS: LazyLock<Vec<String>> = LazyLock::new(|| {
    quiver_operators::functions::all()
        .iter()
        .flat_map(|f| std::iter::once(f.name().to_string()).chain(f.aliases().iter().cloned()))
        .filter(|name| name != TO_VECTOR)
        .map(|name| name.to_ascii_lowercase())
        .collect()
});

/// A vector type named in SQL: its element and dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VectorType {
    half: bool,
    dim: usize,
}

impl VectorType {
    /// The vector type `VECTOR(n)` or `HALFVEC(n)` names, if it is one.
    fn of_sql(data_type: &ast::DataType) -> Option<Self> {
        let ast::DataType::Custom(name, modifiers) = data_type else {
            return None;
        };
        let half = match name.to_string().to_ascii_lowercase().as_str() {
            "vector" => false,
            "halfvec" => true,
            _ => return None,
        };
        let [dim] = modifiers.as_slice() else {
            return None;
        };
        Some(Self {
            half,
            dim: dim.trim().parse().ok()?,
        })
    }

    /// The vector type of a column of `data_type`, if it is one.
    fn of_column(data_type: &DataType) -> Option<Self> {
        let dim = vector_dimension(data_type)?;
        let DataType::FixedSizeList(item, _) = data_type else {
            return None;
        };
        Some(Self {
            half: item.data_type() == &DataType::Float16,
            dim,
        })
    }

    /// The SQL type it is.
    fn sql(self) -> ast::DataType {
        let name = if self.half { "HALFVEC" } else { "VECTOR" };
        ast::DataType::Custom(
            ObjectName::from(vec![Ident::new(name)]),
            vec![self.dim.to_string()],
        )
    }

    /// `value` as a vector of this type: `to_vector(value, dim[, 'column'])`, cast to `f16`
    /// for a `HALFVEC`.
    fn convert(self, value: Expr, column: Option<&str>) -> Expr {
        let mut args = vec![value, number(self.dim)];
        args.extend(column.map(|c| Expr::value(Value::SingleQuotedString(c.to_string()))));
        let converted = function_call(TO_VECTOR, args);
        if !self.half {
            return converted;
        }
        Expr::Cast {
            kind: CastKind::Cast,
            expr: Box::new(converted),
            data_type: self.sql(),
            array: false,
            format: None,
        }
    }
}

fn number(n: usize) -> Expr {
    Expr::value(Value::Number(n.to_string(), false))
}

/// Whether `expr` is a text literal.
fn is_text(expr: &Expr) -> bool {
    matches!(expr, Expr::Value(v) if matches!(
        &v.value,
        Value::SingleQuotedString(_) | Value::DoubleQuotedString(_)
    ))
}

/// The visitor: casts of text to vector types and text arguments of the vector functions; the
/// columns of
/// a write's target (`names`, in order) and its vector columns (`columns`), which text values
/// written to them become.
struct VectorText {
    names: Vec<String>,
    columns: HashMap<String, VectorType>,
}

impl VectorText {
    /// Converts the text values of an `INSERT`'s `VALUES` written to vector columns, whose
    /// columns are `names` (the target's, in order, where the insert lists none).
    fn insert(&self, names: &[String], source: &mut ast::Query) {
        let SetExpr::Values(values) = source.body.as_mut() else {
            return;
        };
        for row in &mut values.rows {
            for (value, name) in row.content.iter_mut().zip(names) {
                if let (true, Some(vector)) = (is_text(value), self.columns.get(name)) {
                    let text = std::mem::replace(value, Expr::value(Value::Null));
                    *value = vector.convert(text, Some(name));
                }
            }
        }
    }
}

impl VisitorMut for VectorText {
    type Break = DataFusionError;

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        match expr {
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr: value,
                data_type,
                format: None,
                ..
            } if is_text(value) => {
                if let Some(vector) = VectorType::of_sql(data_type) {
                    let value = std::mem::replace(value.as_mut(), Expr::value(Value::Null));
                    *expr = vector.convert(value, None);
                }
            }
            Expr::Function(Function {
                name,
                args: FunctionArguments::List(list),
                ..
            }) => {
                let name = name.to_string().to_ascii_lowercase();
                if !VECTOR_FUNCTIONS.contains(&name) {
                    return ControlFlow::Continue(());
                }
                for arg in &mut list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(value)) = arg {
                        if is_text(value) {
                            let text = std::mem::replace(value, Expr::value(Value::Null));
                            *value = function_call(TO_VECTOR, vec![text]);
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, statement: &mut Statement) -> ControlFlow<Self::Break> {
        match statement {
            Statement::Update(update) => {
                for assignment in &mut update.assignments {
                    let AssignmentTarget::ColumnName(column) = &assignment.target else {
                        continue;
                    };
                    let name = column.to_string().to_ascii_lowercase();
                    if let (true, Some(vector)) =
                        (is_text(&assignment.value), self.columns.get(&name))
                    {
                        let text =
                            std::mem::replace(&mut assignment.value, Expr::value(Value::Null));
                        assignment.value = vector.convert(text, Some(&name));
                    }
                }
            }
            Statement::Insert(insert) => {
                if let Some(source) = insert.source.as_mut() {
                    // An insert without a column list writes the target's columns in order.
                    let names: Vec<String> = if insert.columns.is_empty() {
                        self.names.clone()
                    } else {
                        insert
                            .columns
                            .iter()
                            .map(|c| c.to_string().to_ascii_lowercase())
                            .collect()
                    };
                    self.insert(&names, source);
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// The table an `INSERT` or `UPDATE` writes, if `statement` is one.
pub fn write_target(statement: &DFStatement) -> Option<ObjectName> {
    match statement {
        DFStatement::Statement(inner) => match inner.as_ref() {
            Statement::Insert(insert) => match &insert.table {
                TableObject::TableName(name) => Some(name.clone()),
                _ => None,
            },
            Statement::Update(update) => match &update.table.relation {
                TableFactor::Table { name, .. } => Some(name.clone()),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Rewrites the vectors written as text in `statement` (see the module documentation) into
/// calls of `to_vector`: in casts of text literals (a cast of anything else, such as a
/// parameter, `$1::VECTOR(3)`, is DataFusion's), in text arguments of the vector functions,
/// and in text values written to the vector columns of `target`, the schema of the collection
/// an `INSERT` or `UPDATE` writes.
pub fn rewrite_vector_text(statement: &mut DFStatement, target: Option<&Schema>) -> Result<()> {
    let fields = target
        .map(|schema| schema.fields().iter())
        .into_iter()
        .flatten();
    let names = fields.clone().map(|f| f.name().clone()).collect();
    let columns = fields
        .filter_map(|f| Some((f.name().clone(), VectorType::of_column(f.data_type())?)))
        .collect();
    let mut visitor = VectorText { names, columns };
    rewrite_statement(statement, &mut visitor)
}
