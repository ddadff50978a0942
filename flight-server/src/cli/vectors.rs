//! Vectors as `quiver sql` prints them: the first few values and the dimension
//! (`[0.12, -0.4, 0.33, …] (384)`), so that a row of a 384-dimension embedding fits a line.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// How many values of a vector the shell prints unless told otherwise.
pub const DEFAULT_VECTOR_VALUES: usize = 8;

/// Whether `data_type` is a vector column's: a fixed-size list of floats.
fn is_vector(data_type: &DataType) -> bool {
    matches!(data_type, DataType::FixedSizeList(item, _) if item.data_type().is_floating())
}

/// `schema` and `batches` with each vector column shown as text of its first `values` values
/// and its dimension; unchanged where `values` is 0 (every value printed) or no column is a
/// vector.
pub fn abbreviate_vectors(
    schema: &Schema,
    batches: &[RecordBatch],
    values: usize,
) -> Result<(SchemaRef, Vec<RecordBatch>), ArrowError> {
    let schema = Arc::new(schema.clone());
    if values == 0 || !schema.fields().iter().any(|f| is_vector(f.data_type())) {
        return Ok((schema, batches.to_vec()));
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match is_vector(f.data_type()) {
            true => Field::new(f.name(), DataType::Utf8, f.is_nullable()),
            false => f.as_ref().clone(),
        })
        .collect();
    let shown = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let batches = batches
        .iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .map(|column| match is_vector(column.data_type()) {
                    true => abbreviated(column, values),
                    false => Ok(column.clone()),
                })
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(shown.clone(), columns)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((shown, batches))
}

/// Each vector of `column` (a fixed-size list of floats) as text of its first `values` values.
fn abbreviated(column: &ArrayRef, values: usize) -> Result<ArrayRef, ArrowError> {
    let list = column.as_fixed_size_list();
    let dim = list.value_length() as usize;
    let formatter = ArrayFormatter::try_new(list.values().as_ref(), &FormatOptions::default())?;
    let mut out = StringBuilder::new();
    for row in 0..list.len() {
        if list.is_null(row) {
            out.append_null();
            continue;
        }
        let start = list.value_offset(row) as usize;
        let shown: Vec<String> = (start..start + dim.min(values))
            .map(|i| formatter.value(i).to_string())
            .collect();
        if dim > values {
            out.append_value(format!("[{}, …] ({dim})", shown.join(", ")));
        } else {
            out.append_value(format!("[{}]", shown.join(", ")));
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{FixedSizeListArray, Float32Array, Int64Array};

    use super::*;

    fn vectors(dim: i32, values: Vec<Option<f32>>, nulls: Option<Vec<bool>>) -> ArrayRef {
        let item = Arc::new(Field::new_list_field(DataType::Float32, true));
        Arc::new(
            FixedSizeListArray::try_new(
                item,
                dim,
                Arc::new(Float32Array::from(values)),
                nulls.map(Into::into),
            )
            .expect("vectors"),
        )
    }

    fn texts(batches: &[RecordBatch], column: usize) -> Vec<Option<String>> {
        batches[0]
            .column(column)
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn long_vectors_show_their_first_values_and_dimension() {
        let column = vectors(
            4,
            vec![
                Some(0.5),
                Some(-1.0),
                Some(2.25),
                Some(3.0),
                Some(0.0),
                Some(0.0),
                Some(0.0),
                Some(0.0),
            ],
            Some(vec![true, false]),
        );
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2]));
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", column.data_type().clone(), true),
        ]);
        let batch =
            RecordBatch::try_new(Arc::new(schema.clone()), vec![ids, column]).expect("batch");
        let (shown, batches) =
            abbreviate_vectors(&schema, std::slice::from_ref(&batch), 2).expect("shown");
        assert_eq!(shown.field(1).data_type(), &DataType::Utf8);
        assert_eq!(
            texts(&batches, 1),
            vec![Some("[0.5, -1.0, …] (4)".to_string()), None]
        );
        let (_, whole) =
            abbreviate_vectors(&schema, std::slice::from_ref(&batch), 4).expect("whole");
        assert_eq!(
            texts(&whole, 1)[0].as_deref(),
            Some("[0.5, -1.0, 2.25, 3.0]")
        );
        let (unchanged, same) =
            abbreviate_vectors(&schema, std::slice::from_ref(&batch), 0).expect("all");
        assert_eq!(unchanged.as_ref(), &schema);
        assert_eq!(same[0], batch);
    }
}
