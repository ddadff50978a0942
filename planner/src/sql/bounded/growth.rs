//! How large a value each bounded function builds, estimated from its arguments before it runs.

use datafusion::common::Result;

use super::arguments::Arguments;

/// The functions whose values may be much larger than their arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Growth {
    /// `repeat(text, n)`: `n` times the text.
    Repeat,
    /// `lpad(text, n [, fill])`: `n` characters.
    LeftPad,
    /// `rpad(text, n [, fill])`: `n` characters.
    RightPad,
    /// `replace(text, from, to)`: the text with each `from` replaced by `to`.
    Replace,
    /// `array_repeat(element, n)`: a list of `n` elements.
    ArrayRepeat,
    /// `array_resize(list, n [, fill])`: a list of `n` elements.
    ArrayResize,
    /// `range([start,] stop [, step])`: the values from `start` up to `stop`.
    Range,
    /// `generate_series([start,] stop [, step])`: the values from `start` to `stop`.
    GenerateSeries,
}

impl Growth {
    /// Every bounded function.
    pub const ALL: [Growth; 8] = [
        Growth::Repeat,
        Growth::LeftPad,
        Growth::RightPad,
        Growth::Replace,
        Growth::ArrayRepeat,
        Growth::ArrayResize,
        Growth::Range,
        Growth::GenerateSeries,
    ];

    /// The name DataFusion registers the function under.
    pub fn function_name(self) -> &'static str {
        match self {
            Growth::Repeat => "repeat",
            Growth::LeftPad => "lpad",
            Growth::RightPad => "rpad",
            Growth::Replace => "replace",
            Growth::ArrayRepeat => "array_repeat",
            Growth::ArrayResize => "array_resize",
            Growth::Range => "range",
            Growth::GenerateSeries => "generate_series",
        }
    }

    /// The bytes of the value the function builds at `row` (at most; `None` where an argument
    /// is NULL or of a form the estimate does not cover, which DataFusion then refuses or
    /// builds small).
    pub(super) fn value_bytes(self, args: &Arguments, row: usize) -> Result<Option<u64>> {
        let count =
            |arg| -> Result<Option<u64>> { Ok(args.integer(arg, row)?.map(|n| n.max(0) as u64)) };
        Ok(match self {
            Growth::Repeat => {
                let text = args.text(0, row).map(str::len);
                count(1)?
                    .zip(text)
                    .map(|(n, len)| n.saturating_mul(len as u64))
            }
            Growth::LeftPad | Growth::RightPad => count(1)?.map(|n| {
                let text = args.text(0, row).unwrap_or_default();
                let fill = args.text(2, row).unwrap_or(" ");
                n.saturating_mul(char_width(text).max(char_width(fill)))
            }),
            Growth::Replace => replaced_bytes(args, row),
            Growth::ArrayRepeat => {
                let element = args.value_bytes(0, row).unwrap_or(1).max(1);
                count(1)?.map(|n| n.saturating_mul(element))
            }
            Growth::ArrayResize => {
                let element = args
                    .list_element_bytes(0, row)
                    .max(args.value_bytes(2, row))
                    .unwrap_or(1)
                    .max(1);
                count(1)?.map(|n| n.saturating_mul(element))
            }
            Growth::Range => series_values(args, row)?.map(|n| n.saturating_mul(8)),
            Growth::GenerateSeries => {
                series_values(args, row)?.map(|n| n.saturating_add(1).saturating_mul(8))
            }
        })
    }
}

/// The bytes a character of `text` takes, on average, rounded up (1 for empty text).
fn char_width(text: &str) -> u64 {
    let chars = text.chars().count().max(1) as u64;
    (text.len() as u64).div_ceil(chars).max(1)
}

/// What `replace(text, from, to)` builds: the text, and `to` for each `from` it holds.
fn replaced_bytes(args: &Arguments, row: usize) -> Option<u64> {
    let (text, from, to) = (args.text(0, row)?, args.text(1, row)?, args.text(2, row)?);
    if to.len() <= from.len() && !from.is_empty() {
        return Some(text.len() as u64);
    }
    let occurrences = if from.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(from).count()
    };
    Some((text.len() as u64).saturating_add((occurrences as u64).saturating_mul(to.len() as u64)))
}

/// How many values `range` of the arguments at `row` has: integers from `start` (0) up to
/// `stop` by `step` (1), or dates and timestamps by an interval.
fn series_values(args: &Arguments, row: usize) -> Result<Option<u64>> {
    let span = |start: i128, stop: i128, step: i128| -> u64 {
        if step == 0 || (stop - start).signum() * step.signum() < 0 {
            return 0;
        }
        u64::try_from((stop - start) / step).unwrap_or(u64::MAX)
    };
    Ok(match args.len() {
        1 => args.integer(0, row)?.map(|stop| span(0, stop.into(), 1)),
        2 => args
            .integer(0, row)?
            .zip(args.integer(1, row)?)
            .map(|(start, stop)| span(start.into(), stop.into(), 1)),
        _ => match (args.nanoseconds(0, row)?, args.nanoseconds(1, row)?) {
            (Some(start), Some(stop)) => args
                .shortest_interval_nanoseconds(2, row)
                .map(|step| span(start.into(), stop.into(), step)),
            _ => match (
                args.integer(0, row)?,
                args.integer(1, row)?,
                args.integer(2, row)?,
            ) {
                (Some(start), Some(stop), Some(step)) => {
                    Some(span(start.into(), stop.into(), step.into()))
                }
                _ => None,
            },
        },
    })
}
