//! Fuzz targets for the decoders of network input, on stable Rust.
//!
//! Each target is a plain `fn(&[u8])` that panics only when it finds a bug:
//! a decoder or validator that panics, a message that does not survive
//! decode → encode → decode, or something accepted that the node could not
//! read back the way start-up reads it. Any fuzzer can drive them (a
//! `cargo fuzz` or bolero harness calls them with the `fuzzing` feature);
//! [`drive`] runs one over its seed corpus and seeded random mutations of
//! it, which the unit tests below do for a few seconds per target.
//!
//! A long run, all targets, 10 minutes each, from a chosen seed:
//!
//! ```text
//! ORDO_FUZZ_SECS=600 ORDO_FUZZ_SEED=42 cargo test --lib fuzzing -- --nocapture
//! ```
//!
//! `ORDO_FUZZ_ITERATIONS` bounds the mutations by count instead. A failure
//! prints the seed, the iteration and the input in hex.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::fabric::blockutil;
use crate::fabric::channelconfig::genesis::GenesisProfile;
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::{self, ChannelPolicies, MAX_BLOCK_BYTES};
use crate::fabric::protos::common::{
    Block, ChannelHeader, ConfigUpdate, ConfigUpdateEnvelope, Envelope, Header, HeaderType,
    Payload, SignatureHeader,
};
use crate::fabric::protos::orderer::SeekInfo;
use crate::runtime::msgprocessor::{self, RuleSet};
use crate::runtime::server::participation::validate_join_block;

/// A fuzz target.
pub type Target = fn(&[u8]);

/// Every target with its name.
pub const TARGETS: [(&str, Target); 5] = [
    ("envelope", envelope),
    ("payload", payload),
    ("seek_info", seek_info),
    ("config_update", config_update),
    ("join_block", join_block),
];

/// The channel the targets validate against: the embedded default's.
fn channel_config() -> &'static ChannelConfig {
    static CONFIG: OnceLock<ChannelConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        ChannelConfig::from_config_block(&genesis_block())
            // The embedded profile is the node's own default: it is valid.
            .unwrap_or_else(|e| panic!("the embedded genesis block is invalid: {e}"))
    })
}

fn genesis_block() -> Block {
    GenesisProfile::embedded("mychannel", vec!["127.0.0.1:7050".into()]).genesis_block()
}

/// Decodes `bytes` as `M`; if it decodes, its encoding decodes to the same
/// message.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<M> {
    let message = M::decode(bytes).ok()?;
    let again = M::decode(message.encode_to_vec().as_slice())
        .unwrap_or_else(|e| panic!("a decoded {message:?} does not decode again: {e}"));
    assert_eq!(
        again, message,
        "decode → encode → decode changed the message"
    );
    Some(message)
}

/// What Broadcast reads of an envelope: the envelope, its payload and both
/// headers, the classification, the channel's filters (signatures, size,
/// expiration), and for a CONFIG_UPDATE the config update as applied to the
/// channel's config.
pub fn envelope(data: &[u8]) {
    let Some(envelope) = round_trip::<Envelope>(data) else {
        return;
    };
    payload(&envelope.payload);
    let config = channel_config();
    if let Ok(header) = msgprocessor::channel_header(&envelope) {
        let _ = msgprocessor::classify(&header).refusal();
        if header.r#type == HeaderType::ConfigUpdate as i32 {
            apply_update(&envelope);
        }
    }
    let _ = RuleSet::standard().apply(&envelope, data.len(), config);
}

/// A payload and its channel and signature headers.
pub fn payload(data: &[u8]) {
    let Some(payload) = round_trip::<Payload>(data) else {
        return;
    };
    if let Some(header) = payload.header {
        let _ = round_trip::<Header>(&header.encode_to_vec());
        let _ = round_trip::<ChannelHeader>(&header.channel_header);
        let _ = round_trip::<SignatureHeader>(&header.signature_header);
    }
}

/// A Deliver request's SeekInfo, and the same bytes as a whole seek envelope.
pub fn seek_info(data: &[u8]) {
    if let Some(info) = round_trip::<SeekInfo>(data) {
        // Every position decodes to one of Fabric's kinds or none.
        for position in [&info.start, &info.stop].into_iter().flatten() {
            let _ = round_trip::<crate::fabric::protos::orderer::SeekPosition>(
                &position.encode_to_vec(),
            );
        }
    }
    envelope(data);
}

/// A CONFIG_UPDATE's data (a ConfigUpdateEnvelope), applied to the
/// channel's config; the bytes are also tried as a bare ConfigUpdate.
pub fn config_update(data: &[u8]) {
    if let Some(update_envelope) = round_trip::<ConfigUpdateEnvelope>(data) {
        let _ = round_trip::<ConfigUpdate>(&update_envelope.config_update);
        apply_update(&update_wrapped(Bytes::copy_from_slice(data)));
    }
    if round_trip::<ConfigUpdate>(data).is_some() {
        let wrapped = ConfigUpdateEnvelope {
            config_update: Bytes::copy_from_slice(data),
            signatures: Vec::new(),
        };
        apply_update(&update_wrapped(wrapped.encode_to_vec().into()));
    }
}

/// A CONFIG_UPDATE envelope for the fuzzed channel carrying `data`.
fn update_wrapped(data: Bytes) -> Envelope {
    let channel_header = ChannelHeader {
        r#type: HeaderType::ConfigUpdate as i32,
        channel_id: channel_config().channel_id.clone(),
        ..ChannelHeader::default()
    };
    let payload = Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec().into(),
            signature_header: Bytes::new(),
        }),
        data,
    };
    Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    }
}

/// Applies a CONFIG_UPDATE envelope to the channel's config: a refusal is
/// fine; an accepted update must make a CONFIG envelope that start-up reads
/// back into the same config.
fn apply_update(update: &Envelope) {
    let current = channel_config();
    let Ok(proposed) = configtx::propose_config_update(current, update, &ChannelPolicies) else {
        return;
    };
    assert_eq!(proposed.config.sequence, current.sequence + 1);
    configtx::check_storable(&proposed.envelope, &proposed.config, MAX_BLOCK_BYTES)
        .unwrap_or_else(|e| panic!("an accepted update makes an unstorable config: {e}"));
    let stored = proposed.envelope.encode_to_vec();
    let read = Envelope::decode(stored.as_slice())
        .unwrap_or_else(|e| panic!("an accepted config envelope does not decode: {e}"));
    let read = ChannelConfig::from_config_envelope(&read)
        .unwrap_or_else(|e| panic!("an accepted config does not read back: {e}"));
    assert_eq!(read.config, proposed.config.config);
    // The chain re-checks an update the config moved past from the
    // envelope it ordered: that path must read it too.
    configtx::last_update(&stored.into())
        .unwrap_or_else(|e| panic!("an accepted config envelope has no last update: {e}"));
}

/// A join block: the participation API's check; an accepted block, stored
/// and read back as start-up reads it, makes the same config, and names
/// itself as the last config. The block is tried as it came and with its
/// data hash made right, so that changes inside the config get past the
/// hash to the checks behind it.
pub fn join_block(data: &[u8]) {
    let Some(mut block) = round_trip::<Block>(data) else {
        return;
    };
    check_join_block(&block);
    let hash = blockutil::data_hash(blockutil::entries(&block));
    if let Some(header) = block.header.as_mut() {
        if header.data_hash != hash {
            header.data_hash = hash;
            check_join_block(&block);
        }
    }
}

fn check_join_block(block: &Block) {
    let Ok(config) = validate_join_block(block, MAX_BLOCK_BYTES) else {
        return;
    };
    let number = blockutil::number(block);
    match blockutil::last_config_index(block) {
        None => assert_eq!(number, 0, "a later join block without LAST_CONFIG"),
        Some(index) => assert_eq!(index, number, "a join block naming another block"),
    }
    let stored = Block::decode(block.encode_to_vec().as_slice())
        .unwrap_or_else(|e| panic!("an accepted join block does not decode again: {e}"));
    let read = ChannelConfig::from_config_block(&stored)
        .unwrap_or_else(|e| panic!("an accepted join block's config does not read back: {e}"));
    assert_eq!(read.config, config.config);
    assert_eq!(read.channel_id, config.channel_id);
}

/// Seed inputs for a target, by name: valid messages of each kind it reads.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    use crate::fabric::configtx::compute::{compute_update, config_update_envelope};
    use crate::fabric::protos::orderer::{seek_position, BatchSize, SeekNewest, SeekPosition};
    let config = channel_config();
    let transaction = crate::fabric::envelopeutil::new_envelope(
        &config.channel_id,
        HeaderType::EndorserTransaction,
        Bytes::from_static(b"a transaction"),
        Bytes::from_static(b"a creator"),
    )
    .0;
    let mut updated = config.config.clone();
    if let Some(orderer) = updated
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut("Orderer"))
    {
        if let Some(value) = orderer.values.get_mut("BatchSize") {
            value.value = BatchSize {
                max_message_count: 10,
                absolute_max_bytes: 1024 * 1024,
                preferred_max_bytes: 512 * 1024,
            }
            .encode_to_vec()
            .into();
        }
    }
    let update = compute_update(&config.channel_id, &config.config, &updated).ok();
    let update_envelope = update.as_ref().map(config_update_envelope);
    let update_data = update_envelope
        .as_ref()
        .and_then(|e| Payload::decode(e.payload.clone()).ok())
        .map(|p| p.data.to_vec());
    let seek = SeekInfo {
        start: Some(SeekPosition {
            r#type: Some(seek_position::Type::Oldest(Default::default())),
        }),
        stop: Some(SeekPosition {
            r#type: Some(seek_position::Type::Newest(SeekNewest {})),
        }),
        behavior: 1,
        error_response: 0,
        content_type: 0,
    };
    let seek_envelope = crate::fabric::envelopeutil::new_envelope(
        &config.channel_id,
        HeaderType::DeliverSeekInfo,
        seek.encode_to_vec().into(),
        Bytes::new(),
    )
    .0;
    let mut seeds: Vec<Vec<u8>> = match target {
        "envelope" => vec![
            transaction.encode_to_vec(),
            seek_envelope.encode_to_vec(),
            genesis_config_envelope(),
        ],
        "payload" => vec![transaction.payload.to_vec(), seek_envelope.payload.to_vec()],
        "seek_info" => vec![seek.encode_to_vec(), seek_envelope.encode_to_vec()],
        "config_update" => update
            .iter()
            .map(Message::encode_to_vec)
            .chain(update_data.clone())
            .collect(),
        "join_block" => vec![genesis_block().encode_to_vec()],
        _ => Vec::new(),
    };
    if target == "envelope" {
        seeds.extend(update_envelope.map(|e| e.encode_to_vec()));
    }
    seeds
}

fn genesis_config_envelope() -> Vec<u8> {
    blockutil::entries(&genesis_block())
        .first()
        .map(|e| e.to_vec())
        .unwrap_or_default()
}

/// How long, or how many mutations, [`drive`] runs.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub seed: u64,
    pub time: Duration,
    pub iterations: Option<u64>,
}

impl Budget {
    /// `ORDO_FUZZ_SEED`, `ORDO_FUZZ_SECS` and `ORDO_FUZZ_ITERATIONS` if set;
    /// otherwise a random seed and `default_time`.
    pub fn from_env(default_time: Duration) -> Budget {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Budget {
            seed: number("ORDO_FUZZ_SEED").unwrap_or_else(|| rand::rng().next_u64()),
            time: number("ORDO_FUZZ_SECS").map_or(default_time, Duration::from_secs),
            iterations: number("ORDO_FUZZ_ITERATIONS"),
        }
    }
}

/// Runs `target` on every seed, then on seeded random mutations of them
/// until the budget is spent; returns how many inputs it ran. A panic of
/// the target is reported with the seed, the iteration and the input.
pub fn drive(name: &str, target: Target, seeds: &[Vec<u8>], budget: Budget) -> u64 {
    let run = |iteration: u64, input: &[u8]| {
        let outcome = std::panic::catch_unwind(|| target(input));
        if let Err(panic) = outcome {
            eprintln!(
                "fuzz target {name} failed: seed {} (ORDO_FUZZ_SEED={}), iteration {iteration}, input {}",
                budget.seed,
                budget.seed,
                hex::encode(input)
            );
            std::panic::resume_unwind(panic);
        }
    };
    for seed in seeds {
        run(0, seed);
    }
    if seeds.is_empty() {
        return 0;
    }
    let mut rng = StdRng::seed_from_u64(budget.seed);
    let started = Instant::now();
    let mut iteration = 0;
    loop {
        let done = match budget.iterations {
            Some(limit) => iteration >= limit,
            None => started.elapsed() >= budget.time,
        };
        if done {
            break;
        }
        iteration += 1;
        let base = &seeds[rng.random_range(0..seeds.len())];
        let mut input = base.clone();
        for _ in 0..rng.random_range(1..=4) {
            mutate(&mut rng, &mut input, seeds);
        }
        run(iteration, &input);
    }
    seeds.len() as u64 + iteration
}

/// One mutation: flips, interesting bytes, insertions, deletions, copies
/// inside the input, a splice with another seed, a cut.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    if input.is_empty() {
        input.push(rng.random());
        return;
    }
    let at = rng.random_range(0..input.len());
    match rng.random_range(0..8) {
        0 => input[at] ^= 1 << rng.random_range(0..8),
        1 => input[at] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.random_range(0..5)],
        2 => {
            let len = rng.random_range(1..=8);
            let mut extra = vec![0u8; len];
            rng.fill_bytes(&mut extra);
            input.splice(at..at, extra);
        }
        3 => {
            let end = (at + rng.random_range(1..=16)).min(input.len());
            input.drain(at..end);
        }
        4 => {
            // A copy of a stretch of the input elsewhere in it: repeats
            // fields and nests messages deeper.
            let end = (at + rng.random_range(1..=64)).min(input.len());
            let stretch = input[at..end].to_vec();
            let to = rng.random_range(0..=input.len());
            input.splice(to..to, stretch);
        }
        5 => {
            let other = &seeds[rng.random_range(0..seeds.len())];
            if !other.is_empty() {
                let from = rng.random_range(0..other.len());
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
        }
        6 => input.truncate(at),
        _ => {
            // A varint length or number pushed to its extremes.
            let len = rng.random_range(1..=5).min(input.len() - at);
            for byte in &mut input[at..at + len] {
                *byte |= 0x80;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few seconds per target in the test suite; ORDO_FUZZ_SECS for more.
    const TEST_TIME: Duration = Duration::from_secs(3);

    fn fuzz(name: &str) {
        let (_, target) = TARGETS
            .iter()
            .find(|(n, _)| *n == name)
            .copied()
            .unwrap_or_else(|| panic!("no target {name}"));
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "target {name} has seeds");
        let budget = Budget::from_env(TEST_TIME);
        let runs = drive(name, target, &seeds, budget);
        println!("fuzz target {name}: {runs} inputs, seed {}", budget.seed);
        assert!(runs > seeds.len() as u64, "mutations ran");
    }

    #[test]
    fn fuzz_envelope() {
        fuzz("envelope");
    }

    #[test]
    fn fuzz_payload() {
        fuzz("payload");
    }

    #[test]
    fn fuzz_seek_info() {
        fuzz("seek_info");
    }

    #[test]
    fn fuzz_config_update() {
        fuzz("config_update");
    }

    #[test]
    fn fuzz_join_block() {
        fuzz("join_block");
    }

    #[test]
    fn the_seeds_are_accepted_where_they_should_be() {
        // The config update seed is a valid update: the deepest checks run.
        let data = corpus("config_update");
        let update = ConfigUpdate::decode(data[0].as_slice()).expect("an update");
        let envelope = crate::fabric::configtx::compute::config_update_envelope(&update);
        configtx::propose_config_update(channel_config(), &envelope, &ChannelPolicies)
            .expect("the seed update is valid");
        let block = Block::decode(corpus("join_block")[0].as_slice()).expect("a block");
        validate_join_block(&block, MAX_BLOCK_BYTES).expect("the seed block joins");
    }

    #[test]
    fn a_target_that_panics_is_reported_with_its_input() {
        fn fragile(data: &[u8]) {
            assert!(!data.contains(&0xAB), "found it");
        }
        let budget = Budget {
            seed: 7,
            time: Duration::from_secs(5),
            iterations: Some(100_000),
        };
        let seeds = vec![vec![0u8; 4]];
        let caught = std::panic::catch_unwind(|| drive("fragile", fragile, &seeds, budget));
        assert!(caught.is_err(), "the mutations reach the bad byte");
    }
}
