//! A function's arguments row by row, for estimating what it builds before it runs.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampNanosecondType};
use datafusion::common::Result;
use datafusion::logical_expr::ColumnarValue;

/// The arguments of one call: scalars as one-row arrays, read at row 0 for every row.
pub(super) struct Arguments {
    values: Vec<(ArrayRef, bool)>,
    rows: usize,
}

impl Arguments {
    /// `args` of a call over `rows` rows.
    pub(super) fn new(args: &[ColumnarValue], rows: usize) -> Result<Self> {
        let values = args
            .iter()
            .map(|arg| {
                Ok(match arg {
                    ColumnarValue::Array(array) => (array.clone(), false),
                    ColumnarValue::Scalar(scalar) => (scalar.to_array_of_size(1)?, true),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { values, rows })
    }

    /// The rows of the call.
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// How many arguments the call has.
    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    /// Argument `arg` and the index of `row` in it; `None` past the last argument or for NULL.
    fn at(&self, arg: usize, row: usize) -> Option<(&ArrayRef, usize)> {
        let (array, scalar) = self.values.get(arg)?;
        let index = if *scalar { 0 } else { row };
        (index < array.len() && array.is_valid(index)).then_some((array, index))
    }

    /// Argument `arg` at `row` as an integer.
    pub(super) fn integer(&self, arg: usize, row: usize) -> Result<Option<i64>> {
        let Some((array, index)) = self.at(arg, row) else {
            return Ok(None);
        };
        let value = cast(&array.slice(index, 1), &DataType::Int64)?;
        let value = value.as_primitive::<Int64Type>();
        Ok(value.is_valid(0).then(|| value.value(0)))
    }

    /// Argument `arg` at `row` as a point in time, in nanoseconds (dates and timestamps).
    pub(super) fn nanoseconds(&self, arg: usize, row: usize) -> Result<Option<i64>> {
        let Some((array, index)) = self.at(arg, row) else {
            return Ok(None);
        };
        let as_nanoseconds = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let value = match array.data_type() {
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => {
                cast(&array.slice(index, 1), &as_nanoseconds)?
            }
            _ => return Ok(None),
        };
        let value = value.as_primitive::<TimestampNanosecondType>();
        Ok(value.is_valid(0).then(|| value.value(0)))
    }

    /// Argument `arg` at `row` as a `MonthDayNano` interval: the shortest time it can span, in
    /// nanoseconds (a month as 28 days).
    pub(super) fn shortest_interval_nanoseconds(&self, arg: usize, row: usize) -> Option<i128> {
        const DAY: i128 = 86_400 * 1_000_000_000;
        let (array, index) = self.at(arg, row)?;
        let interval = array
            .as_primitive_opt::<datafusion::arrow::datatypes::IntervalMonthDayNanoType>()?
            .value(index);
        Some(
            i128::from(interval.months) * 28 * DAY
                + i128::from(interval.days) * DAY
                + i128::from(interval.nanoseconds),
        )
    }

    /// Argument `arg` at `row` as text.
    pub(super) fn text(&self, arg: usize, row: usize) -> Option<&str> {
        let (array, index) = self.at(arg, row)?;
        match array.data_type() {
            DataType::Utf8 => Some(array.as_string::<i32>().value(index)),
            DataType::LargeUtf8 => Some(array.as_string::<i64>().value(index)),
            DataType::Utf8View => Some(array.as_string_view().value(index)),
            _ => None,
        }
    }

    /// The bytes argument `arg` holds at `row`.
    pub(super) fn value_bytes(&self, arg: usize, row: usize) -> Option<u64> {
        let (array, index) = self.at(arg, row)?;
        Some(
            array
                .slice(index, 1)
                .to_data()
                .get_slice_memory_size()
                .ok()? as u64,
        )
    }

    /// The bytes an element of the list argument `arg` holds at `row`, on average.
    pub(super) fn list_element_bytes(&self, arg: usize, row: usize) -> Option<u64> {
        let (array, index) = self.at(arg, row)?;
        let elements = match array.data_type() {
            DataType::List(_) => array.as_list::<i32>().value(index),
            DataType::LargeList(_) => array.as_list::<i64>().value(index),
            DataType::FixedSizeList(_, _) => array.as_fixed_size_list().value(index),
            _ => return None,
        };
        let bytes = elements.to_data().get_slice_memory_size().ok()? as u64;
        Some(bytes.div_ceil(elements.len().max(1) as u64))
    }
}
