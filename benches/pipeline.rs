//! Benchmarks of the steps every envelope goes through:
//! validation, cutting, block hashing, durable ledger append; what a
//! signature costs to make and to check; checking a config update.
//!
//! `cargo bench --bench pipeline`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use prost::Message;

use ordo::fabric::blockutil;
use ordo::fabric::channelconfig::genesis::GenesisProfile;
use ordo::fabric::channelconfig::ChannelConfig;
use ordo::runtime::blockcutter::{BlockCutter, OrderedMessage};
use ordo::runtime::ledger::LedgerFactory;
use ordo::runtime::msgprocessor::{self, RuleSet};
use ordo::tools::client::envelope::transaction;

const ENVELOPE_DATA: usize = 2048;
const BATCH: usize = 500;

fn envelopes(count: usize) -> Vec<Bytes> {
    let data = Bytes::from(vec![0x5a; ENVELOPE_DATA]);
    (0..count)
        .map(|_| {
            transaction("mychannel", data.clone())
                .encode_to_vec()
                .into()
        })
        .collect()
}

fn validation(c: &mut Criterion) {
    let profile = GenesisProfile::embedded("mychannel", vec![]);
    let config = ChannelConfig::from_config_block(&profile.genesis_block()).expect("config");
    let rules = RuleSet::standard();
    let raw = envelopes(1).remove(0);
    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_and_validate_2KB", |b| {
        b.iter(|| {
            let envelope =
                ordo::fabric::protos::common::Envelope::decode(raw.clone()).expect("decode");
            let header = msgprocessor::channel_header(&envelope).expect("header");
            rules.apply(&envelope, raw.len(), &config).expect("valid");
            header.channel_id.len()
        })
    });
    group.finish();
}

fn cutter(c: &mut Criterion) {
    let profile = GenesisProfile::embedded("mychannel", vec![]);
    let config = ChannelConfig::from_config_block(&profile.genesis_block()).expect("config");
    let messages: Vec<OrderedMessage> = envelopes(BATCH * 4)
        .into_iter()
        .map(|envelope| OrderedMessage {
            size: envelope.len(),
            envelope,
        })
        .collect();
    let mut group = c.benchmark_group("blockcutter");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("ordered_2000_messages", |b| {
        b.iter_batched(
            || messages.clone(),
            |messages| {
                let mut cutter = BlockCutter::new(config.batch_size);
                messages
                    .into_iter()
                    .map(|m| cutter.ordered(m).batches.len())
                    .sum::<usize>()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn hashing(c: &mut Criterion) {
    let batch = envelopes(BATCH);
    let bytes: usize = batch.iter().map(Bytes::len).sum();
    let mut group = c.benchmark_group("block_hashing");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("data_and_header_hash_500x2KB", |b| {
        b.iter(|| {
            let block = blockutil::new_block(
                7,
                Bytes::from_static(&[1; 32]),
                batch.clone(),
                0,
                Bytes::new(),
            );
            blockutil::header_hash(block.header.as_ref().expect("header"))
        })
    });
    group.finish();
}

fn ledger(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let factory = LedgerFactory::open(dir.path()).expect("ledger");
    let genesis = GenesisProfile::embedded("mychannel", vec![]).genesis_block();
    let store = factory.create_store("mychannel", &genesis).expect("store");
    let mut writer = store.writer().expect("writer");
    let batch = envelopes(BATCH);
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.bench_function("append_flushed_block_500x2KB", |b| {
        b.iter(|| {
            let tip = store.tip();
            let block =
                blockutil::new_block(tip.height, tip.last_hash, batch.clone(), 0, Bytes::new());
            writer.append(&[block]).expect("append");
            writer.publish();
        })
    });
    group.finish();
}

fn signatures(c: &mut Criterion) {
    use p256::ecdsa::signature::Verifier;
    let identity =
        ordo::tools::client::identity::SigningIdentity::generate("BenchMSP").expect("identity");
    let envelope = ordo::tools::client::envelope::signed_transaction(
        "mychannel",
        Bytes::from(vec![0x5a; ENVELOPE_DATA]),
        &identity,
    );
    let key = identity.verifying_key();
    let signature = p256::ecdsa::Signature::from_der(&envelope.signature).expect("DER");
    let mut group = c.benchmark_group("signature");
    group.throughput(Throughput::Elements(1));
    group.bench_function("ecdsa_p256_sign_2KB_payload", |b| {
        b.iter(|| identity.sign(&envelope.payload))
    });
    group.bench_function("ecdsa_p256_verify_2KB_payload_portable", |b| {
        b.iter(|| key.verify(&envelope.payload, &signature).is_ok())
    });
    // What the node's rules pay per envelope of a channel member: expiration,
    // then /Channel/Writers (cached identity, policy, ring verify, low-S
    // check). `benches/policy.rs` breaks this down.
    let org = ordo::security::testing::TestOrg::new("BenchMSP");
    let mut profile = GenesisProfile::embedded("mychannel", vec![]);
    profile.orderer_organizations = vec![org.profile()];
    let config = ChannelConfig::from_config_block(&profile.genesis_block()).expect("config");
    let member = org
        .client
        .transaction("mychannel", Bytes::from(vec![0x5a; ENVELOPE_DATA]));
    let rules = RuleSet::standard();
    let encoded_len = member.encoded_len();
    group.bench_function("node_signature_rule_2KB", |b| {
        b.iter(|| rules.apply(&member, encoded_len, &config).expect("valid"))
    });
    group.finish();
}

fn config_update(c: &mut Criterion) {
    use ordo::fabric::configtx::compute::{compute_update, config_update_envelope};
    use ordo::fabric::configtx::{propose_config_update, ChannelPolicies};
    let configtx = ordo::fabric::configtxgen::ConfigTx::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config"),
    )
    .expect("configtx");
    let block = configtx
        .genesis_block("SoloChannel", "mychannel")
        .expect("genesis");
    let current = ChannelConfig::from_config_block(&block).expect("config");
    let mut updated = current.config.clone();
    let value = updated
        .channel_group
        .as_mut()
        .and_then(|r| r.groups.get_mut("Orderer"))
        .and_then(|o| o.values.get_mut("BatchSize"))
        .expect("batch size");
    let mut size =
        ordo::fabric::protos::orderer::BatchSize::decode(value.value.clone()).expect("size");
    size.max_message_count = 10;
    value.value = size.encode_to_vec().into();
    let update = compute_update("mychannel", &current.config, &updated).expect("update");
    let envelope = config_update_envelope(&update);
    let mut group = c.benchmark_group("config_update");
    group.bench_function("validate_batch_size_update", |b| {
        b.iter(|| propose_config_update(&current, &envelope, &ChannelPolicies).expect("valid"))
    });
    group.finish();
}

criterion_group!(
    benches,
    validation,
    cutter,
    hashing,
    ledger,
    signatures,
    config_update
);
criterion_main!(benches);
