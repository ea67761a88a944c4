//! `PUT .../channels` with a `config-update-envelope` part: a CONFIG_UPDATE
//! submitted through the admin API. Fabric checks the envelope's shape here
//! (`ValidateUpdateConfigEnvelope`) and then processes it as Broadcast would;
//! Ordo hands it to its Broadcast processing itself, so every check an
//! envelope meets on Broadcast (size, Writers, the update's signatures
//! against each changed element's mod_policy, config validation) applies.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tokio_util::sync::CancellationToken;

use super::super::broadcast::BroadcastStream;
use super::super::MAX_MESSAGE_BYTES;
use crate::fabric::protos::common::{
    ChannelHeader, ConfigUpdate, ConfigUpdateEnvelope, Envelope, HeaderType, Payload, Status,
};
use crate::runtime::registrar::Registrar;

/// Fabric's `ValidateUpdateConfigEnvelope`: the envelope must be a
/// CONFIG_UPDATE naming a channel; returns the channel its ConfigUpdate names.
pub fn validate_update_envelope(envelope: &Envelope) -> Result<String, String> {
    let payload = Payload::decode(envelope.payload.clone()).map_err(|_| "bad payload")?;
    let header = payload
        .header
        .filter(|h| !h.channel_header.is_empty())
        .ok_or("bad header")?;
    let channel_header = ChannelHeader::decode(header.channel_header)
        .map_err(|_| "could not unmarshall channel header")?;
    if channel_header.r#type != HeaderType::ConfigUpdate as i32 {
        return Err("bad type".into());
    }
    if channel_header.channel_id.is_empty() {
        return Err("empty channel id".into());
    }
    let update_envelope = ConfigUpdateEnvelope::decode(payload.data)
        .map_err(|e| format!("error unmarshalling ConfigUpdateEnvelope: {e}"))?;
    let update = ConfigUpdate::decode(update_envelope.config_update)
        .map_err(|e| format!("error unmarshalling ConfigUpdate: {e}"))?;
    Ok(update.channel_id)
}

/// What Broadcast answered for the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: Status,
    pub info: String,
}

/// Processes the envelope exactly as a Broadcast stream carrying it alone
/// would, and returns that stream's answer.
pub async fn submit(
    registrar: Arc<Registrar>,
    envelope: &Envelope,
    shutdown: CancellationToken,
) -> Answer {
    let (responses, mut answers) = tokio::sync::mpsc::channel(1);
    let inbound = tonic::codec::Streaming::new_request(
        tonic_prost::ProstDecoder::<Envelope>::default(),
        http_body_util::Full::new(grpc_frame(envelope)),
        None,
        Some(MAX_MESSAGE_BYTES),
    );
    BroadcastStream::new(registrar, responses, shutdown)
        .run(inbound)
        .await;
    match answers.recv().await {
        Some(Ok(response)) => Answer {
            status: Status::try_from(response.status).unwrap_or(Status::InternalServerError),
            info: response.info,
        },
        Some(Err(status)) => Answer {
            status: Status::InternalServerError,
            info: status.message().to_string(),
        },
        // Only a stream stopped by the node's shutdown ends without an answer.
        None => Answer {
            status: Status::ServiceUnavailable,
            info: "the orderer is stopping".into(),
        },
    }
}

/// One length-prefixed, uncompressed gRPC message: how the envelope would
/// arrive on a Broadcast stream.
fn grpc_frame(envelope: &Envelope) -> Bytes {
    let message = envelope.encode_to_vec();
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    // Bounded by the request body limit, far below 4 GiB.
    frame.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    frame.put_slice(&message);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::protos::common::Header;

    fn envelope(kind: HeaderType, header_channel: &str, update_channel: &str) -> Envelope {
        let update = ConfigUpdate {
            channel_id: update_channel.into(),
            ..Default::default()
        };
        let payload = Payload {
            header: Some(Header {
                channel_header: ChannelHeader {
                    r#type: kind as i32,
                    channel_id: header_channel.into(),
                    ..Default::default()
                }
                .encode_to_vec()
                .into(),
                signature_header: Bytes::new(),
            }),
            data: ConfigUpdateEnvelope {
                config_update: update.encode_to_vec().into(),
                signatures: vec![],
            }
            .encode_to_vec()
            .into(),
        };
        Envelope {
            payload: payload.encode_to_vec().into(),
            signature: Bytes::new(),
        }
    }

    #[test]
    fn update_envelopes_are_checked_as_fabric_checks_them() {
        let good = envelope(HeaderType::ConfigUpdate, "alpha", "alpha");
        assert_eq!(validate_update_envelope(&good), Ok("alpha".into()));
        // The channel is the one the ConfigUpdate names.
        let other = envelope(HeaderType::ConfigUpdate, "alpha", "beta");
        assert_eq!(validate_update_envelope(&other), Ok("beta".into()));

        assert_eq!(
            validate_update_envelope(&Envelope::default()),
            Err("bad header".into())
        );
        let junk = Envelope {
            payload: Bytes::from_static(b"\xff\xff"),
            signature: Bytes::new(),
        };
        assert_eq!(validate_update_envelope(&junk), Err("bad payload".into()));
        let normal = envelope(HeaderType::EndorserTransaction, "alpha", "alpha");
        assert_eq!(validate_update_envelope(&normal), Err("bad type".into()));
        let nameless = envelope(HeaderType::ConfigUpdate, "", "alpha");
        assert_eq!(
            validate_update_envelope(&nameless),
            Err("empty channel id".into())
        );
    }

    #[test]
    fn the_frame_is_a_grpc_message() {
        let env = envelope(HeaderType::ConfigUpdate, "alpha", "alpha");
        let frame = grpc_frame(&env);
        assert_eq!(frame[0], 0);
        let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        assert_eq!(len, frame.len() - 5);
        assert_eq!(Envelope::decode(&frame[5..]).expect("decodes"), env);
    }
}
