//! The Writers check of every Broadcast envelope, against a bare signature
//! verification, so that what the MSP and the policy add is visible:
//!
//! - `ring_verify_2KB`: ring's ECDSA P-256 verification alone (key parsed each time);
//! - `identity_verify_2KB`: an identity's verify (DER parse, low-S check, ring);
//! - `writers_2KB`: `/Channel/Writers` over the envelope's signed data, the
//!   identity from the cache (ImplicitMeta ANY over two groups, three orgs);
//! - `rules_2KB`: all of Broadcast's rules (empty, size, expiration, Writers);
//! - `writers_cold_cache_2KB`: the first envelope of a signer under a new
//!   config (deserialization and chain validation included).
//!
//! `cargo bench --bench policy`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

use ordo::fabric::channelconfig::genesis::GenesisProfile;
use ordo::fabric::channelconfig::ChannelConfig;
use ordo::runtime::msgprocessor::RuleSet;
use ordo::security::policies::{envelope_as_signed_data, CHANNEL_WRITERS};
use ordo::security::testing::TestOrg;

const ENVELOPE_DATA: usize = 2048;

fn writers(c: &mut Criterion) {
    let orderer = TestOrg::new("OrdererMSP");
    let org1 = TestOrg::new("Org1MSP");
    let org2 = TestOrg::new("Org2MSP");
    let mut profile = GenesisProfile::embedded("mychannel", vec![]);
    profile.orderer_organizations = vec![orderer.profile()];
    profile.application_organizations = Some(vec![org1.profile(), org2.profile()]);
    let genesis = profile.genesis_block();
    let config = ChannelConfig::from_config_block(&genesis).expect("config");

    // The last org's client: an ImplicitMeta ANY tries the others first.
    let envelope = org2
        .client
        .transaction("mychannel", Bytes::from(vec![0x5a; ENVELOPE_DATA]));
    let signed = envelope_as_signed_data(&envelope).expect("signed data");
    let identity = config
        .msp_manager
        .deserialize_identity(&signed[0].identity)
        .expect("a member");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&org2.client.certificate_pem()).expect("PEM");
    let certificate = pem.parse_x509().expect("certificate");
    let point = certificate.public_key().subject_public_key.data.to_vec();

    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ring_verify_2KB", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &point)
                .verify(&envelope.payload, &envelope.signature)
                .expect("verifies")
        })
    });
    group.bench_function("identity_verify_2KB", |b| {
        b.iter(|| {
            identity
                .verify(&envelope.payload, &envelope.signature)
                .expect("verifies")
        })
    });
    group.bench_function("writers_2KB", |b| {
        b.iter(|| {
            config
                .policy_manager
                .evaluate_signed_data(CHANNEL_WRITERS, &signed)
                .expect("a writer")
        })
    });
    let rules = RuleSet::standard();
    let encoded_len = envelope.encoded_len();
    group.bench_function("rules_2KB", |b| {
        b.iter(|| rules.apply(&envelope, encoded_len, &config).expect("valid"))
    });
    let channel_id = config.channel_id.clone();
    group.bench_function("writers_cold_cache_2KB", |b| {
        b.iter_batched(
            || {
                ChannelConfig::from_config(channel_id.clone(), config.config.clone())
                    .expect("config")
            },
            |fresh| {
                fresh
                    .policy_manager
                    .evaluate_signed_data(CHANNEL_WRITERS, &signed)
                    .expect("a writer")
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, writers);
criterion_main!(benches);
