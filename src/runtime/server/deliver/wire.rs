//! Deliver's answers on the wire, without tonic's encoder.
//!
//! tonic encodes each message into a buffer of its own: a block would be
//! copied once per stream, and a stream whose client does not read would
//! hold that copy, plus the one hyper took before it, and the blocks queued
//! behind them (megabytes per stream with large blocks). Here a block goes
//! out as the stored bytes themselves: the gRPC prefix and the field's tag
//! and length in a few bytes of their own, then the block's `Bytes` (shared
//! with the block cache and every other stream sending it). hyper asks for
//! the next piece only when HTTP/2 has room to send, and the Deliver task
//! reads the next block only when this body has taken the last one, so a
//! stream that does not read holds at most the blocks under way, not copies
//! of them.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame};
use prost::Message;
use tokio::sync::mpsc;
use tonic::codegen::http::HeaderMap;
use tonic::Status as GrpcStatus;

use crate::fabric::protos::ordo::wire::{deliver_response, DeliverResponse};

/// The path of `orderer.AtomicBroadcast/Deliver`.
pub const DELIVER_PATH: &str = "/orderer.AtomicBroadcast/Deliver";

/// gRPC's length prefix: a compression flag and a big-endian length.
const PREFIX_LEN: usize = 5;

/// `DeliverResponse.block`: field 2, length-delimited.
const BLOCK_TAG: u8 = (2 << 3) | 2;

/// The response body of one Deliver stream, fed by its task.
pub struct DeliverBody {
    responses: mpsc::Receiver<Result<DeliverResponse, GrpcStatus>>,
    /// A block whose prefix has gone out.
    block: Option<Bytes>,
    /// `General.MaxSendMsgSize`.
    max_send: usize,
    finished: bool,
}

impl DeliverBody {
    pub fn new(
        responses: mpsc::Receiver<Result<DeliverResponse, GrpcStatus>>,
        max_send: usize,
    ) -> DeliverBody {
        DeliverBody {
            responses,
            block: None,
            max_send,
            finished: false,
        }
    }

    fn trailers(&mut self, status: GrpcStatus) -> Frame<Bytes> {
        self.finished = true;
        let mut trailers = HeaderMap::new();
        if let Err(status) = status.add_header(&mut trailers) {
            tracing::warn!(%status, "cannot write a Deliver stream's status");
            let _ = GrpcStatus::internal("").add_header(&mut trailers);
        }
        Frame::trailers(trailers)
    }
}

/// The gRPC prefix and the field header of a block of `length` bytes; the
/// message's whole length.
fn block_prefix(length: usize) -> (Bytes, usize) {
    let message = 1 + prost::length_delimiter_len(length) + length;
    let mut prefix = BytesMut::with_capacity(PREFIX_LEN + 1 + 10);
    prefix.put_u8(0);
    prefix.put_u32(message as u32);
    prefix.put_u8(BLOCK_TAG);
    prost::encoding::encode_varint(length as u64, &mut prefix);
    (prefix.freeze(), message)
}

/// A small message, prefixed.
fn framed(message: &DeliverResponse) -> Bytes {
    let length = message.encoded_len();
    let mut out = BytesMut::with_capacity(PREFIX_LEN + length);
    out.put_u8(0);
    out.put_u32(length as u32);
    message.encode_raw(&mut out);
    out.freeze()
}

impl HttpBody for DeliverBody {
    type Data = Bytes;
    type Error = GrpcStatus;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, GrpcStatus>>> {
        let this = self.get_mut();
        if let Some(block) = this.block.take() {
            return Poll::Ready(Some(Ok(Frame::data(block))));
        }
        if this.finished {
            return Poll::Ready(None);
        }
        let frame = match std::task::ready!(this.responses.poll_recv(cx)) {
            Some(Ok(DeliverResponse {
                r#type: Some(deliver_response::Type::Block(block)),
            })) => {
                let (prefix, length) = block_prefix(block.len());
                if length > this.max_send || length > u32::MAX as usize {
                    // gRPC-Go refuses to send a message over the limit so.
                    let status = GrpcStatus::resource_exhausted(format!(
                        "trying to send message larger than max ({length} vs. {})",
                        this.max_send
                    ));
                    this.trailers(status)
                } else {
                    this.block = Some(block);
                    Frame::data(prefix)
                }
            }
            Some(Ok(response)) => Frame::data(framed(&response)),
            Some(Err(status)) => this.trailers(status),
            None => this.trailers(GrpcStatus::ok("")),
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.finished && self.block.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::protos::common::Status;
    use crate::fabric::protos::orderer::deliver_response::Type as ClientType;
    use crate::fabric::protos::orderer::DeliverResponse as ClientResponse;
    use http_body_util::BodyExt;

    /// Splits a body's data into gRPC messages, as a client reads them.
    fn messages(mut data: &[u8]) -> Vec<ClientResponse> {
        let mut out = Vec::new();
        while !data.is_empty() {
            assert_eq!(data[0], 0, "not compressed");
            let length = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
            out.push(
                ClientResponse::decode(&data[PREFIX_LEN..PREFIX_LEN + length]).expect("decodes"),
            );
            data = &data[PREFIX_LEN + length..];
        }
        out
    }

    #[tokio::test]
    async fn blocks_and_statuses_read_as_fabrics_deliver_responses() {
        let (tx, rx) = mpsc::channel(4);
        let block = crate::fabric::protos::common::Block {
            header: Some(crate::fabric::protos::common::BlockHeader {
                number: 7,
                ..Default::default()
            }),
            data: Some(crate::fabric::protos::common::BlockData {
                data: vec![Bytes::from(vec![9u8; 300])],
            }),
            metadata: None,
        };
        let stored = Bytes::from(block.encode_to_vec());
        tx.send(Ok(DeliverResponse {
            r#type: Some(deliver_response::Type::Block(stored.clone())),
        }))
        .await
        .expect("send");
        tx.send(Ok(DeliverResponse {
            r#type: Some(deliver_response::Type::Status(Status::Success as i32)),
        }))
        .await
        .expect("send");
        drop(tx);
        let collected = DeliverBody::new(rx, 1 << 20).collect().await.expect("body");
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
        let got = messages(&collected.to_bytes());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].r#type, Some(ClientType::Block(block)));
        assert_eq!(
            got[1].r#type,
            Some(ClientType::Status(Status::Success as i32))
        );
    }

    #[tokio::test]
    async fn a_block_goes_out_as_its_stored_bytes() {
        let (tx, rx) = mpsc::channel(1);
        let stored = Bytes::from(vec![1u8; 4096]);
        tx.send(Ok(DeliverResponse {
            r#type: Some(deliver_response::Type::Block(stored.clone())),
        }))
        .await
        .expect("send");
        let mut body = DeliverBody::new(rx, 1 << 20);
        let prefix = body.frame().await.expect("frame").expect("ok");
        assert_eq!(prefix.data_ref().map(Bytes::len), Some(PREFIX_LEN + 1 + 2));
        let sent = body
            .frame()
            .await
            .expect("frame")
            .expect("ok")
            .into_data()
            .expect("data");
        assert_eq!(
            sent.as_ptr(),
            stored.as_ptr(),
            "the same memory, not a copy"
        );
    }

    #[tokio::test]
    async fn a_block_over_max_send_msg_size_ends_the_stream_resource_exhausted() {
        let (tx, rx) = mpsc::channel(1);
        tx.send(Ok(DeliverResponse {
            r#type: Some(deliver_response::Type::Block(Bytes::from(vec![0u8; 2000]))),
        }))
        .await
        .expect("send");
        let collected = DeliverBody::new(rx, 1000).collect().await.expect("body");
        let trailers = collected.trailers().cloned().expect("trailers");
        let code = tonic::Code::ResourceExhausted as i32;
        assert_eq!(
            trailers.get("grpc-status").map(|v| v.as_bytes()),
            Some(code.to_string().as_bytes())
        );
        assert!(collected.to_bytes().is_empty());
    }
}
