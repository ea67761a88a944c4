//! The channel participation API over HTTP, as osnadmin uses it, together with
//! Broadcast and Deliver on the channels it creates.

use bytes::Bytes;
use hyper::Method;
use prost::Message;

use ordo::fabric::channelconfig::genesis;
use ordo::fabric::channelconfig::{keys, ChannelConfig};
use ordo::fabric::configtx::compute::{compute_update, config_update_envelope};
use ordo::fabric::protos::common::{Block, Envelope, Status};
use ordo::fabric::protos::orderer::seek_info::SeekBehavior;
use ordo::fabric::protos::orderer::BatchSize;
use ordo::tools::client::envelope::{transaction, BlockPosition};
use ordo::tools::client::participation::{AdminAnswer, AdminClient, AdminTls};

use crate::common::*;

async fn node_without_channels() -> TestNode {
    TestNode::with_env(vec![(
        "ORDERER_GENERAL_BOOTSTRAPMETHOD".into(),
        "none".into(),
    )])
    .await
}

fn genesis(channel: &str) -> Vec<u8> {
    profile(channel).genesis_block().encode_to_vec()
}

async fn order(node: &TestNode, channel: &str, count: u32) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    for i in 0..count {
        stream
            .send(transaction(channel, Bytes::from(format!("{channel}-{i}"))))
            .await;
    }
    for _ in 0..count {
        let answer = stream.next().await.expect("answer");
        assert_eq!(answer.status, Status::Success as i32, "{}", answer.info);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_two_channels_order_list_remove_one_and_restart() {
    let mut node = node_without_channels().await;
    let admin = node.admin();
    // No channel: null, as Fabric encodes an empty list.
    assert_eq!(
        admin.list().await.expect("list").json()["channels"],
        serde_json::Value::Null
    );

    for channel in ["alpha", "beta"] {
        let joined = admin.join(genesis(channel)).await.expect("join");
        assert_eq!(joined.status, 201, "{}", joined.body);
        assert_eq!(
            joined.json(),
            serde_json::json!({
                "name": channel,
                "url": format!("/participation/v1/channels/{channel}"),
                "consensusRelation": "consenter",
                "status": "active",
                "height": 1,
            })
        );
    }
    order(&node, "alpha", 7).await;
    order(&node, "beta", 3).await;
    wait_for_height(&node, "alpha", 2).await;
    wait_for_height(&node, "beta", 2).await;

    let list = admin.list().await.expect("list");
    assert_eq!(list.status, 200);
    assert_eq!(
        list.json(),
        serde_json::json!({
            "systemChannel": null,
            "channels": [
                {"name": "alpha", "url": "/participation/v1/channels/alpha"},
                {"name": "beta", "url": "/participation/v1/channels/beta"},
            ]
        })
    );
    let info = admin.info("alpha").await.expect("info");
    assert_eq!(info.status, 200);
    assert_eq!(info.json()["height"], 2);

    let removed = admin.remove("beta").await.expect("remove");
    assert_eq!(removed.status, 204, "{}", removed.body);
    assert_eq!(admin.info("beta").await.expect("info").status, 404);
    assert_eq!(admin.remove("beta").await.expect("remove").status, 404);
    // Broadcast no longer finds it; alpha goes on.
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream
        .send(transaction("beta", Bytes::from_static(b"late")))
        .await;
    let answer = stream.next().await.expect("answer");
    assert_eq!(answer.status, Status::BadRequest as i32);
    assert!(
        answer.info.contains("channel does not exist"),
        "{}",
        answer.info
    );
    order(&node, "alpha", 2).await;
    assert!(!ledger_dir(node.dir.path()).join("chains/beta").exists());

    node.restart().await;
    let admin = node.admin();
    let names: Vec<String> = admin.list().await.expect("list").json()["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names, vec!["alpha"]);
    let blocks = wait_for_transactions(&node, "alpha", 9).await;
    verify_chain(&blocks);

    // A removed channel can be joined again, from scratch.
    let joined = admin.join(genesis("beta")).await.expect("join");
    assert_eq!(joined.status, 201, "{}", joined.body);
    assert_eq!(joined.json()["height"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_join_requests_get_fabric_status_codes() {
    let node = node_without_channels().await;
    let admin = node.admin();
    assert_eq!(
        admin.join(genesis("alpha")).await.expect("join").status,
        201
    );

    let again = admin.join(genesis("alpha")).await.expect("join");
    assert_eq!(again.status, 405, "{}", again.body);
    assert!(again.json()["error"]
        .as_str()
        .expect("error")
        .contains("already exists"));

    let garbage = admin
        .join(b"\xff\xff not a block".to_vec())
        .await
        .expect("join");
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    assert!(
        garbage.body.contains("cannot unmarshal"),
        "{}",
        garbage.body
    );

    // A well-formed later config block: linked by a hash, naming itself.
    let mut later = profile("gamma").genesis_block();
    if let Some(header) = later.header.as_mut() {
        header.number = 3;
        header.previous_hash = Bytes::from(vec![1u8; 32]);
    }
    later.metadata = Some(ordo::fabric::blockutil::orderer_metadata(3, Bytes::new()));
    let later = admin.join(later.encode_to_vec()).await.expect("join");
    assert_eq!(later.status, 400, "{}", later.body);
    assert!(later.body.contains("onboarding"), "{}", later.body);

    let not_config = ordo::fabric::blockutil::new_block(
        0,
        Bytes::new(),
        vec![Bytes::from_static(b"junk")],
        0,
        Bytes::new(),
    );
    let not_config = admin.join(not_config.encode_to_vec()).await.expect("join");
    assert_eq!(not_config.status, 400, "{}", not_config.body);

    let unknown = admin.info("nosuch").await.expect("info");
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"].is_string());
    assert_eq!(admin.info("Bad_Name").await.expect("info").status, 400);

    // Only the first join created anything.
    let list = admin.list().await.expect("list").json();
    assert_eq!(list["channels"].as_array().expect("channels").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_api_is_turned_back_on() {
    let node = TestNode::with_env(vec![(
        "ORDERER_CHANNELPARTICIPATION_ENABLED".into(),
        "false".into(),
    )])
    .await;
    let answer = node.admin().list().await.expect("list");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["channels"][0]["name"], CHANNEL);
}

/// PEM files for an admin listener with mutual TLS: a CA that issues the
/// server's certificate (for 127.0.0.1) and a trusted client's, and a CA of
/// its own for a stranger's client certificate.
pub struct AdminPki {
    pub dir: tempfile::TempDir,
}

impl AdminPki {
    pub fn new() -> AdminPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        let ca = |name: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let key = rcgen::KeyPair::generate().expect("key");
            rcgen::CertifiedIssuer::self_signed(params, key).expect("ca")
        };
        let leaf = |issuer: &rcgen::CertifiedIssuer<'_, rcgen::KeyPair>,
                    names: Vec<String>,
                    file: &str| {
            let params = rcgen::CertificateParams::new(names).expect("params");
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, issuer).expect("signed");
            write(&format!("{file}.crt"), cert.pem());
            write(&format!("{file}.key"), key.serialize_pem());
        };
        let trusted = ca("tlsca.admin.test");
        let stranger = ca("tlsca.stranger.test");
        leaf(&trusted, vec!["127.0.0.1".into()], "server");
        leaf(&trusted, vec!["admin.test".into()], "client");
        leaf(&stranger, vec!["admin.test".into()], "stranger");
        write("ca.crt", trusted.pem());
        write("stranger-ca.crt", stranger.pem());
        AdminPki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// The node's Admin.TLS settings.
    pub fn node_env(&self) -> Vec<(String, String)> {
        [
            ("ORDERER_ADMIN_TLS_ENABLED", "true".to_string()),
            ("ORDERER_ADMIN_TLS_CERTIFICATE", self.path("server.crt")),
            ("ORDERER_ADMIN_TLS_PRIVATEKEY", self.path("server.key")),
            ("ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED", "true".to_string()),
            (
                "ORDERER_ADMIN_TLS_CLIENTROOTCAS",
                format!("[{}]", self.path("ca.crt")),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// A client trusting the node's CA, presenting `identity` (a file stem) if any.
    pub fn client(&self, address: &str, identity: Option<&str>) -> AdminClient {
        let read = |name: String| std::fs::read(self.path(&name)).expect("read");
        let tls = AdminTls {
            ca_pem: read("ca.crt".into()),
            client_cert_pem: identity.map(|i| read(format!("{i}.crt"))),
            client_key_pem: identity.map(|i| read(format!("{i}.key"))),
        };
        AdminClient::with_tls(address, &tls).expect("TLS client")
    }
}

fn admin_address(node: &TestNode) -> String {
    node.node
        .as_ref()
        .expect("running")
        .admin_addr()
        .expect("admin listener")
        .to_string()
}

/// The CONFIG_UPDATE envelope that sets the channel's MaxMessageCount.
fn max_message_count_update(current: &ChannelConfig, count: u32) -> Envelope {
    let mut updated = current.config.clone();
    let orderer = updated
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::ORDERER_GROUP))
        .expect("orderer group");
    let value = orderer
        .values
        .get_mut(keys::BATCH_SIZE)
        .expect("batch size");
    let mut size = BatchSize::decode(value.value.clone()).expect("batch size");
    size.max_message_count = count;
    value.value = size.encode_to_vec().into();
    let update = compute_update(&current.channel_id, &current.config, &updated).expect("a change");
    config_update_envelope(&update)
}

/// The block Deliver sends for `number`.
async fn delivered(node: &TestNode, channel: &str, number: u64) -> Block {
    let mut client = node.client().await;
    let got = deliver(
        &mut client,
        channel,
        BlockPosition::Number(number),
        BlockPosition::Number(number),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(got.status, Some(Status::Success));
    got.blocks.into_iter().next().expect("one block")
}

/// Asserts a fetch answered the block Deliver sends for `number`, byte for byte.
async fn assert_fetched(node: &TestNode, answer: &AdminAnswer, channel: &str, number: u64) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("content-type"), "application/octet-stream");
    let block = delivered(node, channel, number).await;
    assert_eq!(answer.raw.as_ref(), block.encode_to_vec().as_slice());
}

fn error_of(answer: &AdminAnswer) -> String {
    answer.json()["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an error body: {}", answer.body))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_only_trusted_client_certificates() {
    let pki = AdminPki::new();
    let mut env = pki.node_env();
    env.push(("ORDERER_GENERAL_BOOTSTRAPMETHOD".into(), "none".into()));
    let node = TestNode::with_env(env).await;
    let address = admin_address(&node);
    let trusted = pki.client(&address, Some("client"));

    let joined = trusted.join(genesis("alpha")).await.expect("join");
    assert_eq!(joined.status, 201, "{}", joined.body);

    // No client certificate, a stranger's, or no TLS at all: refused before
    // any request is read, so nothing is served and nothing changes.
    for (who, client) in [
        ("no certificate", pki.client(&address, None)),
        ("a stranger", pki.client(&address, Some("stranger"))),
        ("plain HTTP", AdminClient::new(&address)),
    ] {
        let answer = client.remove("alpha").await;
        assert!(answer.is_err(), "{who} was served: {answer:?}");
        if who != "plain HTTP" {
            let refusal = answer.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(refusal.contains("received fatal alert"), "{who}: {refusal}");
        }
        assert!(client.list().await.is_err(), "{who} was served a list");
    }
    // A client that does not trust the node's CA refuses the node.
    let suspicious = AdminClient::with_tls(
        &address,
        &AdminTls {
            ca_pem: std::fs::read(pki.path("stranger-ca.crt")).expect("read"),
            client_cert_pem: Some(std::fs::read(pki.path("client.crt")).expect("read")),
            client_key_pem: Some(std::fs::read(pki.path("client.key")).expect("read")),
        },
    )
    .expect("client");
    assert!(suspicious.list().await.is_err());

    let list = trusted.list().await.expect("list");
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["channels"][0]["name"], "alpha");

    // Fetch, update and remove over mutual TLS.
    order(&node, "alpha", 3).await;
    wait_for_height(&node, "alpha", 2).await;
    let newest = trusted.fetch("alpha", "newest").await.expect("fetch");
    assert_fetched(&node, &newest, "alpha", 1).await;

    let current =
        ChannelConfig::from_config_block(&delivered(&node, "alpha", 0).await).expect("config");
    let update = max_message_count_update(&current, 7);
    let updated = trusted
        .update(update.encode_to_vec())
        .await
        .expect("update");
    assert_eq!(updated.status, 201, "{}", updated.body);
    wait_for_height(&node, "alpha", 3).await;
    let config = trusted.fetch("alpha", "config").await.expect("fetch");
    assert_fetched(&node, &config, "alpha", 2).await;
    let block = Block::decode(config.raw.clone()).expect("block");
    let applied = ChannelConfig::from_config_block(&block).expect("config");
    assert_eq!(applied.batch_size.max_message_count, 7);

    let removed = trusted.remove("alpha").await.expect("remove");
    assert_eq!(removed.status, 204, "{}", removed.body);
    let list = trusted.list().await.expect("list");
    assert_eq!(list.body, "{\"systemChannel\":null,\"channels\":null}\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_answers_the_blocks_deliver_sends() {
    let mut p = profile(CHANNEL);
    p.batch_size.max_message_count = 2;
    let node = TestNode::from_profile(&p, vec![]).await;
    let admin = node.admin();
    order(&node, CHANNEL, 4).await;
    wait_for_height(&node, CHANNEL, 3).await;

    let oldest = admin.fetch(CHANNEL, "oldest").await.expect("fetch");
    assert_fetched(&node, &oldest, CHANNEL, 0).await;
    let newest = admin.fetch(CHANNEL, "newest").await.expect("fetch");
    assert_fetched(&node, &newest, CHANNEL, 2).await;
    let second = admin.fetch(CHANNEL, "1").await.expect("fetch");
    assert_fetched(&node, &second, CHANNEL, 1).await;
    let config = admin.fetch(CHANNEL, "config").await.expect("fetch");
    assert_fetched(&node, &config, CHANNEL, 0).await;

    let beyond = admin.fetch(CHANNEL, "3").await.expect("fetch");
    assert_eq!(beyond.status, 404, "{}", beyond.body);
    assert_eq!(error_of(&beyond), "no such block number [3] in index");
    let bad = admin.fetch(CHANNEL, "-1").await.expect("fetch");
    assert_eq!(bad.status, 400);
    assert_eq!(
        error_of(&bad),
        "invalid block ID: '-1' not equal <newest|oldest|config|(number)>"
    );
    // Go's encoder escapes '<' and '>'.
    assert!(bad.body.contains("\\u003cnewest"), "{}", bad.body);
    let unknown = admin.fetch("nosuch", "newest").await.expect("fetch");
    assert_eq!(unknown.status, 404);
    assert_eq!(error_of(&unknown), "channel does not exist");
    let illegal = admin.fetch("No_Such", "newest").await.expect("fetch");
    assert_eq!(illegal.status, 400);
    let put = admin
        .request(
            Method::PUT,
            &format!("/participation/v1/channels/{CHANNEL}/blocks/newest"),
            &[],
            Bytes::new(),
        )
        .await
        .expect("put");
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), "GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_updates_go_through_broadcast_processing() {
    let node = TestNode::embedded().await;
    let admin = node.admin();
    let current =
        ChannelConfig::from_config_block(&delivered(&node, CHANNEL, 0).await).expect("config");
    let update = max_message_count_update(&current, 3);

    let applied = admin.update(update.encode_to_vec()).await.expect("update");
    assert_eq!(applied.status, 201, "{}", applied.body);
    assert_eq!(applied.header("content-type"), "application/json");
    assert_eq!(
        applied.header("location"),
        format!("/participation/v1/channels/{CHANNEL}")
    );
    assert_eq!(applied.json()["name"], CHANNEL);
    wait_for_height(&node, CHANNEL, 2).await;
    let block = delivered(&node, CHANNEL, 1).await;
    let config = ChannelConfig::from_config_block(&block).expect("a config block");
    assert_eq!(config.batch_size.max_message_count, 3);
    assert_eq!(config.sequence, current.sequence + 1);
    // Applied: three transactions make one block.
    order(&node, CHANNEL, 3).await;
    wait_for_height(&node, CHANNEL, 3).await;

    // The same update again is stale: Broadcast refuses it, and so does the API.
    let stale = admin.update(update.encode_to_vec()).await.expect("update");
    assert_eq!(stale.status, 400, "{}", stale.body);
    assert!(
        error_of(&stale).starts_with("cannot update: "),
        "{}",
        stale.body
    );
    // Nothing was ordered for it.
    assert_eq!(node.height(CHANNEL), 3);

    // A config update for a channel the node does not have.
    let mut elsewhere_config = current.clone();
    elsewhere_config.channel_id = "elsewhere".into();
    let elsewhere = max_message_count_update(&elsewhere_config, 4);
    let missing = admin
        .update(elsewhere.encode_to_vec())
        .await
        .expect("update");
    assert_eq!(missing.status, 405, "{}", missing.body);
    assert_eq!(error_of(&missing), "cannot update: channel does not exist");

    // Not a config update, not an envelope, no envelope at all.
    let normal = ordo::tools::client::envelope::transaction(CHANNEL, Bytes::from_static(b"tx"));
    let wrong = admin.update(normal.encode_to_vec()).await.expect("update");
    assert_eq!(wrong.status, 400);
    assert_eq!(error_of(&wrong), "invalid config update envelope: bad type");
    let empty = admin.update(Vec::new()).await.expect("update");
    assert_eq!(
        error_of(&empty),
        "invalid config update envelope: bad header"
    );
    let garbage = admin
        .update(b"\xff\xff\xff".to_vec())
        .await
        .expect("update");
    assert_eq!(garbage.status, 400);
    assert!(
        error_of(&garbage)
            .starts_with("cannot unmarshal file part config-update-envelope into an envelope"),
        "{}",
        garbage.body
    );
    let plain = admin
        .request(
            Method::PUT,
            "/participation/v1/channels",
            &[("content-type", "text/plain")],
            Bytes::from_static(b"x"),
        )
        .await
        .expect("put");
    assert_eq!(plain.status, 400);
    assert_eq!(error_of(&plain), "unsupported Content-Type: [text/plain]");
    assert_eq!(node.height(CHANNEL), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_fabric_texts_and_headers() {
    let node = TestNode::with_env(vec![
        ("ORDERER_GENERAL_BOOTSTRAPMETHOD".into(), "none".into()),
        (
            "ORDERER_CHANNELPARTICIPATION_MAXREQUESTBODYSIZE".into(),
            "64 KB".into(),
        ),
    ])
    .await;
    let admin = node.admin();
    let call =
        |method: Method, path: &'static str, headers: &'static [(&'static str, &'static str)]| {
            let admin = admin.clone();
            async move {
                admin
                    .request(method, path, headers, Bytes::new())
                    .await
                    .expect("request")
            }
        };

    // The list: exactly Fabric's body for no channels, JSON, not cached.
    let list = admin.list().await.expect("list");
    assert_eq!(list.status, 200);
    assert_eq!(list.body, "{\"systemChannel\":null,\"channels\":null}\n");
    assert_eq!(list.header("content-type"), "application/json");
    assert_eq!(list.header("cache-control"), "no-store");

    // Accept: JSON or a wildcard, else 406.
    let html = call(
        Method::GET,
        "/participation/v1/channels",
        &[("accept", "text/html")],
    )
    .await;
    assert_eq!(html.status, 406);
    assert_eq!(
        error_of(&html),
        "response Content-Type is application/json only"
    );
    for accept in ["application/*", "*/*", "text/html, application/json"] {
        let ok = admin
            .request(
                Method::GET,
                "/participation/v1/channels",
                &[("accept", accept)],
                Bytes::new(),
            )
            .await
            .expect("request");
        assert_eq!(ok.status, 200, "{accept}");
    }

    // Methods: 405 with Fabric's body and Allow.
    for method in [Method::PATCH, Method::DELETE, Method::OPTIONS, Method::HEAD] {
        let answer = admin
            .request(
                method.clone(),
                "/participation/v1/channels",
                &[],
                Bytes::new(),
            )
            .await
            .expect("request");
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow"), "GET, POST, PUT", "{method}");
        if method != Method::HEAD {
            assert_eq!(
                error_of(&answer),
                format!("invalid request method: {method}")
            );
        }
    }
    for method in [Method::POST, Method::PUT, Method::PATCH] {
        let answer = admin
            .request(
                method.clone(),
                "/participation/v1/channels/alpha",
                &[],
                Bytes::new(),
            )
            .await
            .expect("request");
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.header("allow"), "GET, DELETE", "{method}");
        assert_eq!(
            error_of(&answer),
            format!("invalid request method: {method}")
        );
    }

    // The API's root redirects to the list; unknown paths are 404.
    let root = call(Method::GET, "/participation/v1/", &[]).await;
    assert_eq!(root.status, 302);
    assert_eq!(root.header("location"), "/participation/v1/channels");
    let bare = call(Method::GET, "/participation/v1", &[]).await;
    assert_eq!(bare.status, 301);
    assert_eq!(bare.header("location"), "/participation/v1/");
    let elsewhere = call(Method::GET, "/participation/v2/channels", &[]).await;
    assert_eq!(elsewhere.status, 404);
    assert_eq!(elsewhere.body, "404 page not found\n");

    // Unknown and illegal channels: Fabric's texts, without the channel's name.
    let unknown = admin.info("nosuch").await.expect("info");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, "{\"error\":\"channel does not exist\"}\n");
    let gone = admin.remove("nosuch").await.expect("remove");
    assert_eq!(gone.status, 404);
    assert_eq!(error_of(&gone), "cannot remove: channel does not exist");
    let illegal = admin.info("Bad_Name").await.expect("info");
    assert_eq!(illegal.status, 400);
    assert_eq!(
        error_of(&illegal),
        "invalid channel ID: 'Bad_Name' contains illegal characters"
    );

    // Joins: the block is checked as Fabric checks it.
    let mut tampered = profile("alpha").genesis_block();
    if let Some(header) = tampered.header.as_mut() {
        header.data_hash = Bytes::from_static(&[7; 32]);
    }
    let answer = admin.join(tampered.encode_to_vec()).await.expect("join");
    assert_eq!(answer.status, 400);
    assert_eq!(
        error_of(&answer),
        "invalid join block: invalid block: Header.DataHash is different from Hash(block.Data)"
    );
    let mut orderer_only = profile("alpha").config();
    if let Some(root) = orderer_only.channel_group.as_mut() {
        root.groups.remove(keys::APPLICATION_GROUP);
    }
    let answer = admin
        .join(genesis::genesis_block("alpha", orderer_only).encode_to_vec())
        .await
        .expect("join");
    assert_eq!(answer.status, 400);
    assert_eq!(
        error_of(&answer),
        "invalid join block: invalid config: must contain application config"
    );
    let no_boundary = admin
        .request(
            Method::POST,
            "/participation/v1/channels",
            &[("content-type", "multipart/form-data")],
            Bytes::from_static(b"x"),
        )
        .await
        .expect("post");
    assert_eq!(
        error_of(&no_boundary),
        "cannot read form from request body: multipart: boundary is empty"
    );
    let oversize = admin.join(vec![0u8; 100 * 1024]).await.expect("join");
    assert_eq!(oversize.status, 400, "{}", oversize.body);
    assert_eq!(
        error_of(&oversize),
        "cannot read form from request body: multipart: NextPart: http: request body too large"
    );
    assert_eq!(
        admin.join(genesis("alpha")).await.expect("join").status,
        201
    );
    let again = admin.join(genesis("alpha")).await.expect("join");
    assert_eq!(again.status, 405);
    assert_eq!(again.header("allow"), "GET, DELETE");
    assert_eq!(error_of(&again), "cannot join: channel already exists");

    let info = admin.info("alpha").await.expect("info");
    assert_eq!(info.header("cache-control"), "no-store");
    let list = admin.list().await.expect("list");
    assert_eq!(
        list.body,
        "{\"systemChannel\":null,\"channels\":[{\"name\":\"alpha\",\"url\":\"/participation/v1/channels/alpha\"}]}\n"
    );
}
