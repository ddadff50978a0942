//! Reading vectors out of Arrow arrays and scalars.
//!
//! A vector column is a `FixedSizeList` of `Float32` or `Float16` (what collections store); vector
//! literals and parameters arrive as `List` or `FixedSizeList` of any float type. [`VectorArray`]
//! gives row access without copying for the stored forms, and [`scalar_vector`] turns a literal
//! into the `f32` query every kernel takes.

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, GenericListArray, OffsetSizeTrait,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float16Type, Float32Type};
use datafusion::common::ScalarValue;
use half::f16;
use std::sync::Arc;

use crate::error::{OperatorError, Result};

/// One row of a vector column.
#[derive(Debug, Clone, Copy)]
pub enum VectorRef<'a> {
    /// Stored as `f32`.
    F32(&'a [f32]),
    /// Stored as `f16`.
    F16(&'a [f16]),
}

impl VectorRef<'_> {
    /// Number of dimensions.
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
        }
    }

    /// Whether the vector has no dimensions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector as `f32` values (copied only for `f16`).
    pub fn to_f32(&self) -> std::borrow::Cow<'_, [f32]> {
        match self {
            Self::F32(v) => std::borrow::Cow::Borrowed(v),
            Self::F16(v) => std::borrow::Cow::Owned(v.iter().map(|x| x.to_f32()).collect()),
        }
    }
}

/// Contiguous values of a `FixedSizeList` vector column.
#[derive(Debug, Clone, Copy)]
pub enum FixedValues<'a> {
    /// `f32` storage.
    F32(&'a [f32]),
    /// `f16` storage.
    F16(&'a [f16]),
}

/// Row access to a vector array of any supported layout.
#[derive(Debug)]
pub enum VectorArray<'a> {
    /// `FixedSizeList<Float32 | Float16>`: contiguous rows of `dim` values.
    Fixed {
        /// The list array (for validity).
        array: &'a FixedSizeListArray,
        /// All child values, starting at the array's first row.
        values: FixedValues<'a>,
        /// Values per row.
        dim: usize,
    },
    /// `List<Float32>` with 32-bit offsets.
    List(&'a GenericListArray<i32>, &'a [f32]),
    /// `List<Float32>` with 64-bit offsets.
    LargeList(&'a GenericListArray<i64>, &'a [f32]),
}

/// The element type a vector function works in: `Float16` storage is read as is, everything
/// else is cast to `Float32`.
pub fn is_native_element(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Float32 | DataType::Float16)
}

/// Whether `data_type` is a list of numbers, i.e. something that can be a vector.
pub fn is_vector_type(data_type: &DataType) -> bool {
    match data_type {
        DataType::FixedSizeList(f, _) | DataType::List(f) | DataType::LargeList(f) => {
            f.data_type().is_numeric() || f.data_type() == &DataType::Null
        }
        _ => false,
    }
}

/// The type a vector argument of `data_type` is coerced to before a vector function runs:
/// stored `FixedSizeList<Float32|Float16>` unchanged, other fixed lists to `Float32` elements,
/// variable lists to `List<Float32>`. `None` if it is not a vector at all.
pub fn coerced_vector_type(data_type: &DataType) -> Option<DataType> {
    let item = |t: DataType| Arc::new(Field::new_list_field(t, true));
    match data_type {
        DataType::FixedSizeList(f, n) if is_native_element(f.data_type()) => {
            Some(data_type.clone())
                .filter(|_| f.is_nullable())
                .or_else(|| Some(DataType::FixedSizeList(item(f.data_type().clone()), *n)))
        }
        DataType::FixedSizeList(_, n) if is_vector_type(data_type) => {
            Some(DataType::FixedSizeList(item(DataType::Float32), *n))
        }
        DataType::List(_) | DataType::LargeList(_) if is_vector_type(data_type) => {
            Some(DataType::List(item(DataType::Float32)))
        }
        DataType::Null => Some(DataType::List(item(DataType::Float32))),
        _ => None,
    }
}

fn list_values<O: OffsetSizeTrait>(list: &GenericListArray<O>) -> Option<&[f32]> {
    list.values()
        .as_primitive_opt::<Float32Type>()
        .map(|p| p.values().as_ref())
}

/// The first non-NULL row of a list array whose vector holds a NULL element, if any.
pub fn first_null_element(array: &dyn Array) -> Option<usize> {
    match array.data_type() {
        DataType::FixedSizeList(_, _) => {
            let list = array.as_fixed_size_list();
            let child = list.values();
            if child.logical_null_count() == 0 {
                return None;
            }
            let size = list.value_length() as usize;
            (0..list.len()).find(|&i| {
                let start = list.value_offset(i) as usize;
                list.is_valid(i) && (start..start + size).any(|j| child.is_null(j))
            })
        }
        DataType::List(_) => in_list(array.as_list::<i32>()),
        DataType::LargeList(_) => in_list(array.as_list::<i64>()),
        _ => None,
    }
}

/// [`first_null_element`] of a variable-length list.
fn in_list<O: OffsetSizeTrait>(list: &GenericListArray<O>) -> Option<usize> {
    let child = list.values();
    if child.logical_null_count() == 0 {
        return None;
    }
    let offsets = list.value_offsets();
    (0..list.len()).find(|&i| {
        list.is_valid(i)
            && (offsets[i].as_usize()..offsets[i + 1].as_usize()).any(|j| child.is_null(j))
    })
}

impl<'a> VectorArray<'a> {
    /// Wraps `array` (already coerced by [`coerced_vector_type`]); `function` and `position`
    /// name the argument in errors. A vector with a NULL element is an error.
    pub fn try_new(array: &'a ArrayRef, function: &str, position: usize) -> Result<Self> {
        if let Some(row) = first_null_element(array.as_ref()) {
            return Err(OperatorError::NullElement {
                context: format!("{function}: argument {position}"),
                row: Some(row + 1),
            });
        }
        let not_a_vector = || OperatorError::NotAVector {
            function: function.to_string(),
            position,
            data_type: array.data_type().clone(),
        };
        match array.data_type() {
            DataType::FixedSizeList(_, dim) => {
                let list = array.as_fixed_size_list();
                let dim = usize::try_from(*dim).map_err(|_| not_a_vector())?;
                let start = list.offset() * dim;
                let values = if let Some(p) = list.values().as_primitive_opt::<Float32Type>() {
                    FixedValues::F32(&p.values()[start.min(p.len())..])
                } else if let Some(p) = list.values().as_primitive_opt::<Float16Type>() {
                    FixedValues::F16(&p.values()[start.min(p.len())..])
                } else {
                    return Err(not_a_vector());
                };
                Ok(Self::Fixed {
                    array: list,
                    values,
                    dim,
                })
            }
            DataType::List(_) => {
                let list = array.as_list::<i32>();
                Ok(Self::List(
                    list,
                    list_values(list).ok_or_else(not_a_vector)?,
                ))
            }
            DataType::LargeList(_) => {
                let list = array.as_list::<i64>();
                Ok(Self::LargeList(
                    list,
                    list_values(list).ok_or_else(not_a_vector)?,
                ))
            }
            _ => Err(not_a_vector()),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Self::Fixed { array, .. } => array.len(),
            Self::List(a, _) => a.len(),
            Self::LargeList(a, _) => a.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`, or `None` if it is NULL.
    pub fn row(&self, i: usize) -> Option<VectorRef<'a>> {
        match self {
            Self::Fixed { array, values, dim } => {
                if array.is_null(i) {
                    return None;
                }
                let range = i * dim..(i + 1) * dim;
                Some(match values {
                    FixedValues::F32(v) => VectorRef::F32(&v[range]),
                    FixedValues::F16(v) => VectorRef::F16(&v[range]),
                })
            }
            Self::List(a, values) => {
                if a.is_null(i) {
                    return None;
                }
                let offsets = a.value_offsets();
                Some(VectorRef::F32(
                    &values[offsets[i] as usize..offsets[i + 1] as usize],
                ))
            }
            Self::LargeList(a, values) => {
                if a.is_null(i) {
                    return None;
                }
                let offsets = a.value_offsets();
                Some(VectorRef::F32(
                    &values[offsets[i] as usize..offsets[i + 1] as usize],
                ))
            }
        }
    }
}

/// Reads a vector literal or parameter as `f32` values. `Ok(None)` for SQL NULL. Non-finite
/// components are an error: a query vector with NaN has no nearest neighbours.
pub fn scalar_vector(
    value: &ScalarValue,
    function: &str,
    position: usize,
) -> Result<Option<Vec<f32>>> {
    if value.is_null() {
        return Ok(None);
    }
    let array = value.to_array()?;
    let target =
        coerced_vector_type(array.data_type()).ok_or_else(|| OperatorError::NotAVector {
            function: function.to_string(),
            position,
            data_type: array.data_type().clone(),
        })?;
    let array = if &target == array.data_type() {
        array
    } else {
        cast(&array, &target)?
    };
    let vectors = VectorArray::try_new(&array, function, position)?;
    let Some(row) = vectors.row(0) else {
        return Ok(None);
    };
    let out = row.to_f32().into_owned();
    if out.iter().any(|v| !v.is_finite()) {
        return Err(OperatorError::NonFinite {
            context: function.to_string(),
            row: None,
        });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{FixedSizeListArray, Float32Array, ListArray};
    use datafusion::arrow::datatypes::Float64Type;

    fn fixed(rows: &[Option<[f32; 2]>]) -> ArrayRef {
        let values =
            Float32Array::from_iter_values(rows.iter().flat_map(|r| r.unwrap_or([0.0, 0.0])));
        let nulls = rows.iter().map(|r| r.is_some()).collect::<Vec<_>>();
        Arc::new(
            FixedSizeListArray::try_new(
                Arc::new(Field::new_list_field(DataType::Float32, true)),
                2,
                Arc::new(values),
                Some(nulls.into()),
            )
            .unwrap(),
        )
    }

    #[test]
    fn rows_of_a_sliced_fixed_array_are_the_right_ones() {
        let array = fixed(&[Some([1.0, 2.0]), None, Some([5.0, 6.0])]).slice(1, 2);
        let v = VectorArray::try_new(&array, "f", 1).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v.row(0).is_none());
        match v.row(1) {
            Some(VectorRef::F32(r)) => assert_eq!(r, &[5.0, 6.0]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_null_element_is_an_error_not_a_zero() {
        let list =
            ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(vec![Some(0.5), None])]);
        let err = scalar_vector(&ScalarValue::List(Arc::new(list)), "f", 2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "f: argument 2: vector holds a NULL element at row 1"
        );
        let values = Float32Array::from(vec![Some(1.0), Some(2.0), Some(3.0), None]);
        let array: ArrayRef = Arc::new(
            FixedSizeListArray::try_new(
                Arc::new(Field::new_list_field(DataType::Float32, true)),
                2,
                Arc::new(values),
                None,
            )
            .unwrap(),
        );
        assert_eq!(first_null_element(array.as_ref()), Some(1));
        assert_eq!(first_null_element(array.slice(0, 1).as_ref()), None);
        assert!(VectorArray::try_new(&array, "g", 1).is_err());
    }

    #[test]
    fn literals_of_any_float_type_become_f32_queries() {
        let list = ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(vec![
            Some(0.5),
            Some(1.5),
        ])]);
        let scalar = ScalarValue::List(Arc::new(list));
        assert_eq!(
            scalar_vector(&scalar, "f", 2).unwrap(),
            Some(vec![0.5f32, 1.5])
        );
        assert_eq!(scalar_vector(&ScalarValue::Null, "f", 2).unwrap(), None);
        let nan =
            ListArray::from_iter_primitive::<Float64Type, _, _>(vec![Some(vec![Some(f64::NAN)])]);
        let err = scalar_vector(&ScalarValue::List(Arc::new(nan)), "f", 2).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
        let err = scalar_vector(&ScalarValue::Utf8(Some("x".into())), "f", 2).unwrap_err();
        assert!(
            err.to_string().contains("argument 2 must be a vector"),
            "{err}"
        );
    }

    #[test]
    fn coercion_keeps_stored_types_and_widens_the_rest() {
        let f16_col =
            DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float16, true)), 8);
        assert_eq!(coerced_vector_type(&f16_col), Some(f16_col.clone()));
        let f64_list = DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        assert_eq!(
            coerced_vector_type(&f64_list),
            Some(DataType::List(Arc::new(Field::new_list_field(
                DataType::Float32,
                true
            ))))
        );
        assert_eq!(coerced_vector_type(&DataType::Utf8), None);
        let target = coerced_vector_type(&f64_list).unwrap();
        assert_eq!(coerced_vector_type(&target), Some(target));
    }
}
