//! Test helpers: unsigned transactions for the node's own unit tests
//! (signed ones come from `crate::security::testing`).

use bytes::Bytes;
use prost::Message;

use super::new_envelope;
use crate::fabric::protos::common::{Envelope, HeaderType};
use crate::fabric::protos::msp::SerializedIdentity;

/// MSP ID unsigned test transactions name as creator.
pub const TEST_MSP_ID: &str = "SampleOrg";

fn creator(msp_id: &str, certificate_pem: Bytes) -> Bytes {
    SerializedIdentity {
        mspid: msp_id.into(),
        id_bytes: certificate_pem,
    }
    .encode_to_vec()
    .into()
}

/// An unsigned transaction whose creator names [`TEST_MSP_ID`] and no certificate.
pub fn transaction(channel: &str, data: Bytes) -> Envelope {
    let creator = creator(TEST_MSP_ID, Bytes::new());
    new_envelope(channel, HeaderType::EndorserTransaction, data, creator).0
}
