//! Decoding the Arrow data a client streams in with `DoPut` (bulk ingest, bound parameters).
//!
//! Invariants:
//! - The first message that carries data must be a schema.
//! - Untrusted bytes are checked before the IPC decoder sees them ([`check_message`]): the
//!   header must be a valid flatbuffer, every buffer of a record or dictionary batch must lie
//!   inside the message body, and a compressed buffer may not claim more than
//!   [`MAX_DECOMPRESSED_BUFFER`] bytes. A message that fails ends the stream with an
//!   `InvalidArgument` error naming the problem.
//! - Should the decoder panic on some input these checks miss, the panic is caught, the stream
//!   ends with an error, and the decoder is never polled again: bad input never takes a server
//!   task down.
//! - Nothing is buffered here beyond one message at a time.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use arrow_flight::decode::{DecodedFlightData, DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::FlightData;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::{root_as_message, MessageHeader};
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;

use crate::error::FlightServerError;

/// The batches after the schema, as they arrive.
pub type InputBatches = BoxStream<'static, Result<RecordBatch, FlightServerError>>;

fn input_error(e: FlightError) -> FlightServerError {
    match e {
        FlightError::Tonic(status) => FlightServerError::Input(status.message().to_string()),
        other => FlightServerError::Input(other.to_string()),
    }
}

/// Reads the schema at the head of a `DoPut` stream and returns it with the batches that follow,
/// or an error if the stream carries no data.
pub async fn decode(stream: PeekableFlightDataStream) -> Result<(SchemaRef, InputBatches), Status> {
    decode_optional(stream).await?.ok_or_else(|| {
        FlightServerError::Input("the stream ended before a schema was sent".into()).into()
    })
}

/// Like [`decode`], but a stream without any data (only a descriptor) gives `None`.
pub async fn decode_optional(
    stream: PeekableFlightDataStream,
) -> Result<Option<(SchemaRef, InputBatches)>, Status> {
    // A message without an IPC header carries only the descriptor (some clients send one
    // before the schema); it holds no data.
    let messages = stream
        .try_filter(|data| futures::future::ready(!data.data_header.is_empty()))
        .map_err(FlightError::from)
        .and_then(|data| {
            futures::future::ready(
                check_message(&data)
                    .map(|()| data)
                    .map_err(|e| FlightError::DecodeError(e.to_string())),
            )
        });
    let mut decoder = CatchPanics {
        inner: Some(FlightDataDecoder::new(messages)),
    };
    let schema = loop {
        match decoder.next().await {
            Some(Ok(decoded)) => match decoded.payload {
                DecodedPayload::Schema(schema) => break schema,
                DecodedPayload::None => continue,
                DecodedPayload::RecordBatch(_) => {
                    return Err(FlightServerError::Input(
                        "a record batch arrived before the schema".into(),
                    )
                    .into())
                }
            },
            Some(Err(e)) => return Err(input_error(e).into()),
            None => return Ok(None),
        }
    };
    let batches = decoder
        .filter_map(|decoded| {
            futures::future::ready(match decoded {
                Ok(d) => match d.payload {
                    DecodedPayload::RecordBatch(batch) => Some(Ok(batch)),
                    DecodedPayload::None => None,
                    DecodedPayload::Schema(_) => Some(Err(FlightServerError::Input(
                        "a second schema arrived in the same stream".into(),
                    ))),
                },
                Err(e) => Some(Err(input_error(e))),
            })
        })
        .boxed();
    Ok(Some((schema, batches)))
}

/// The most bytes one compressed buffer may claim to decompress to.
pub const MAX_DECOMPRESSED_BUFFER: i64 = 1 << 30;

/// Checks an IPC message's header and buffer layout against its body before decoding.
pub fn check_message(data: &FlightData) -> Result<(), FlightServerError> {
    let bad = |m: String| FlightServerError::Input(format!("malformed IPC message: {m}"));
    let message = root_as_message(&data.data_header).map_err(|e| bad(e.to_string()))?;
    let batch = match message.header_type() {
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        MessageHeader::DictionaryBatch => {
            message.header_as_dictionary_batch().and_then(|d| d.data())
        }
        _ => return Ok(()),
    }
    .ok_or_else(|| bad("the batch header is missing".into()))?;
    let body = &data.data_body;
    let body_len = i64::try_from(body.len()).unwrap_or(i64::MAX);
    if message.bodyLength() < 0 || message.bodyLength() > body_len {
        return Err(bad(format!(
            "the header announces a body of {} bytes but {body_len} arrived",
            message.bodyLength()
        )));
    }
    let compressed = batch.compression().is_some();
    for buffer in batch.buffers().iter().flat_map(|b| b.iter()) {
        let (offset, length) = (buffer.offset(), buffer.length());
        let end = offset.checked_add(length);
        if offset < 0 || length < 0 || end.is_none_or(|end| end > body_len) {
            return Err(bad(format!(
                "a buffer at offset {offset} of {length} bytes lies outside the {body_len}-byte body"
            )));
        }
        if compressed && length >= 8 {
            // Each compressed buffer starts with its decompressed length (-1: not compressed).
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let claimed = body
                .get(start..start.saturating_add(8))
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(i64::from_le_bytes)
                .unwrap_or(i64::MAX);
            if claimed > MAX_DECOMPRESSED_BUFFER {
                return Err(bad(format!(
                    "a compressed buffer claims {claimed} bytes; the limit is {MAX_DECOMPRESSED_BUFFER}"
                )));
            }
        }
    }
    Ok(())
}

/// A decoder that turns a panic into an error and then ends.
struct CatchPanics<S> {
    inner: Option<S>,
}

impl<S> Stream for CatchPanics<S>
where
    S: Stream<Item = Result<DecodedFlightData, FlightError>> + Unpin,
{
    type Item = Result<DecodedFlightData, FlightError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match catch_unwind(AssertUnwindSafe(|| inner.poll_next_unpin(cx))) {
            Ok(poll) => poll,
            Err(_) => {
                self.inner = None;
                Poll::Ready(Some(Err(FlightError::DecodeError(
                    "the IPC data could not be decoded".into(),
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    async fn messages() -> Vec<FlightData> {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))])
            .expect("batch");
        FlightDataEncoderBuilder::new()
            .build(futures::stream::iter(vec![Ok(batch)]))
            .try_collect()
            .await
            .expect("encode")
    }

    #[tokio::test]
    async fn well_formed_messages_pass_and_broken_ones_are_named() {
        let good = messages().await;
        for message in &good {
            check_message(message).expect("well formed");
        }
        let mut truncated = good[1].clone();
        truncated.data_body = truncated.data_body.slice(0..4);
        let err = check_message(&truncated).expect_err("truncated");
        assert!(err.to_string().contains("malformed IPC message"), "{err}");

        let mut junk = good[0].clone();
        junk.data_header = vec![1, 2, 3].into();
        assert!(check_message(&junk).is_err());
    }
}
