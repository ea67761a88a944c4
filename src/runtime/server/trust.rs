//! The main listener's trust in client certificates follows the channels, as
//! Fabric's orderer does: beside `General.TLS.ClientRootCAs`, the TLS root and
//! intermediate CAs of every organization (Orderer and Application groups) of
//! every channel the node serves, updated when a channel joins, leaves or
//! changes its config.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prost::Message;
use rustls::pki_types::CertificateDer;
use tokio::sync::watch;

use super::tls::{certificates_from_config, ListenerTls};
use crate::fabric::channelconfig::keys;
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::protos::common::ConfigGroup;
use crate::fabric::protos::msp::{FabricMspConfig, MspConfig};
use crate::runtime::channel::ChannelHandle;
use crate::runtime::registrar::ChannelObserver;

/// Fabric's X.509 MSP type (`MSPConfig.type`); idemix MSPs carry no TLS CAs.
const FABRIC_MSP: i32 = 0;

/// The TLS root and intermediate CAs of every organization of the channel's
/// Orderer and Application groups.
pub fn organization_tls_cas(config: &ChannelConfig) -> Vec<CertificateDer<'static>> {
    let Some(channel) = config.config.channel_group.as_ref() else {
        return Vec::new();
    };
    [keys::ORDERER_GROUP, keys::APPLICATION_GROUP]
        .iter()
        .filter_map(|name| channel.groups.get(*name))
        .flat_map(|group| group.groups.iter())
        .flat_map(|(org, group)| organization(&config.channel_id, org, group))
        .collect()
}

fn organization(channel: &str, org: &str, group: &ConfigGroup) -> Vec<CertificateDer<'static>> {
    let Some(value) = group.values.get(keys::MSP) else {
        return Vec::new();
    };
    let fabric = MspConfig::decode(value.value.clone())
        .ok()
        .filter(|msp| msp.r#type == FABRIC_MSP)
        .map(|msp| FabricMspConfig::decode(msp.config));
    match fabric {
        Some(Ok(msp)) => msp
            .tls_root_certs
            .iter()
            .chain(msp.tls_intermediate_certs.iter())
            .flat_map(|raw| certificates_from_config(raw))
            .collect(),
        Some(Err(e)) => {
            tracing::warn!(%channel, %org, error = %e, "organization MSP unreadable; its TLS CAs are not trusted");
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// Keeps a listener's trusted client CAs in step with the channels: a
/// [`ChannelObserver`] for the registrar.
pub struct ChannelTlsTrust {
    inner: Arc<Inner>,
}

struct Inner {
    tls: Arc<ListenerTls>,
    /// The config watch of each channel, with the generation that may update
    /// it: a watch that outlives its channel's removal changes nothing.
    watches: Mutex<HashMap<String, Watch>>,
    next_generation: AtomicU64,
    runtime: tokio::runtime::Handle,
}

struct Watch {
    generation: u64,
    task: tokio::task::AbortHandle,
}

impl ChannelTlsTrust {
    /// Must be made inside the tokio runtime the config watches will run on.
    pub fn new(tls: Arc<ListenerTls>) -> ChannelTlsTrust {
        ChannelTlsTrust {
            inner: Arc::new(Inner {
                tls,
                watches: Mutex::new(HashMap::new()),
                next_generation: AtomicU64::new(0),
                runtime: tokio::runtime::Handle::current(),
            }),
        }
    }
}

impl Inner {
    fn update(&self, channel: &str, generation: u64, config: &ChannelConfig) {
        let watches = self.watches.lock().unwrap_or_else(PoisonError::into_inner);
        if watches.get(channel).map(|w| w.generation) == Some(generation) {
            let roots = organization_tls_cas(config);
            tracing::debug!(%channel, sequence = config.sequence, cas = roots.len(), "trusted TLS CAs of the channel's organizations updated");
            self.tls.set_extra_roots(channel, roots);
        }
    }
}

impl ChannelObserver for ChannelTlsTrust {
    fn channel_started(&self, channel: &Arc<ChannelHandle>) {
        let id = channel.id().to_string();
        let generation = self.inner.next_generation.fetch_add(1, Ordering::Relaxed);
        let mut config = channel.subscribe_config();
        let roots = organization_tls_cas(&config.borrow_and_update());
        let mut watches = self
            .inner
            .watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Trusted before the join is answered: its clients may connect at once.
        self.inner.tls.set_extra_roots(&id, roots);
        let task =
            self.inner
                .runtime
                .spawn(follow(self.inner.clone(), id.clone(), generation, config));
        if let Some(old) = watches.insert(
            id,
            Watch {
                generation,
                task: task.abort_handle(),
            },
        ) {
            old.task.abort();
        }
    }

    fn channel_removed(&self, channel: &str) {
        let mut watches = self
            .inner
            .watches
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(watch) = watches.remove(channel) {
            watch.task.abort();
        }
        self.inner.tls.remove_extra_roots(channel);
    }
}

/// Follows one channel's config until the channel goes.
async fn follow(
    inner: Arc<Inner>,
    channel: String,
    generation: u64,
    mut config: watch::Receiver<Arc<ChannelConfig>>,
) {
    while config.changed().await.is_ok() {
        let current = config.borrow_and_update().clone();
        inner.update(&channel, generation, &current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::{value, GenesisProfile};
    use crate::runtime::server::tls::testing::TestCa;
    use crate::runtime::server::tls::{ClientAuth, TlsSettings};
    use bytes::Bytes;

    fn org(msp_id: &str, roots: Vec<Bytes>, intermediates: Vec<Bytes>) -> ConfigGroup {
        // A valid MSP (the channel config checks it) with these TLS CAs.
        let fabric = FabricMspConfig {
            tls_root_certs: roots,
            tls_intermediate_certs: intermediates,
            ..crate::security::testing::TestOrg::new(msp_id).fabric_msp_config()
        };
        let msp = MspConfig {
            r#type: FABRIC_MSP,
            config: fabric.encode_to_vec().into(),
        };
        ConfigGroup {
            values: HashMap::from([value(keys::MSP, &msp)]),
            ..ConfigGroup::default()
        }
    }

    /// The embedded profile's config with organizations added under `group`.
    fn config_with(orgs: Vec<(&str, &str, ConfigGroup)>) -> ChannelConfig {
        let mut config = GenesisProfile::embedded("mychannel", vec![]).config();
        let channel = config.channel_group.as_mut().expect("channel group");
        for (group, name, org) in orgs {
            channel
                .groups
                .entry(group.to_string())
                .or_default()
                .groups
                .insert(name.to_string(), org);
        }
        ChannelConfig::from_config("mychannel".into(), config).expect("config")
    }

    fn der(ca: &TestCa) -> CertificateDer<'static> {
        CertificateDer::from(ca.der())
    }

    #[test]
    fn every_organization_tls_ca_of_both_groups() {
        // The MSP checks that a TLS intermediate chains to a TLS root.
        let app_ca = crate::security::testing::TestCa::root("org1-tlsca");
        let app_intermediate = app_ca.intermediate("org1-tlsica");
        let orderer_ca = TestCa::new("orderer-tlsca");
        let config = config_with(vec![
            (
                keys::ORDERER_GROUP,
                "OrdererOrg",
                org("OrdererMSP", vec![orderer_ca.pem().into()], vec![]),
            ),
            (
                keys::APPLICATION_GROUP,
                "Org1",
                org("Org1MSP", vec![app_ca.pem()], vec![app_intermediate.pem()]),
            ),
            // An idemix-like MSP and an organization without one add nothing.
            (
                keys::APPLICATION_GROUP,
                "Org2",
                ConfigGroup {
                    values: HashMap::from([value(
                        keys::MSP,
                        &MspConfig {
                            r#type: 1,
                            config: Bytes::from_static(b"idemix"),
                        },
                    )]),
                    ..ConfigGroup::default()
                },
            ),
            (keys::APPLICATION_GROUP, "Org3", ConfigGroup::default()),
        ]);
        let mut found = organization_tls_cas(&config);
        let mut expected = vec![
            der(&orderer_ca),
            CertificateDer::from(app_ca.der().to_vec()),
            CertificateDer::from(app_intermediate.der().to_vec()),
        ];
        found.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        expected.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        assert_eq!(found, expected);

        let plain = config_with(vec![]);
        assert!(organization_tls_cas(&plain).is_empty());
    }

    /// A config change on the channel's watch changes what the listener trusts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_config_change_updates_the_trusted_cas() {
        let ca = TestCa::new("tlsca");
        let server = ca.leaf(&["localhost"]);
        let tls = Arc::new(
            ListenerTls::new(TlsSettings {
                certificate_pem: server.cert_pem.into_bytes(),
                private_key_pem: server.key_pem.into_bytes(),
                client_roots: vec![der(&ca)],
                client_auth: ClientAuth::Required,
                alpn: Vec::new(),
            })
            .expect("TLS"),
        );
        let trust = ChannelTlsTrust::new(tls.clone());
        let (publish, watch) = watch::channel(Arc::new(config_with(vec![])));
        let generation = 7;
        {
            let mut watches = trust.inner.watches.lock().expect("lock");
            let task = tokio::spawn(follow(
                trust.inner.clone(),
                "mychannel".into(),
                generation,
                watch,
            ));
            watches.insert(
                "mychannel".into(),
                Watch {
                    generation,
                    task: task.abort_handle(),
                },
            );
        }
        assert_eq!(tls.trusted_roots(), vec![der(&ca)]);

        let org_ca = TestCa::new("org1-tlsca");
        publish
            .send(Arc::new(config_with(vec![(
                keys::APPLICATION_GROUP,
                "Org1",
                org("Org1MSP", vec![org_ca.pem().into()], vec![]),
            )])))
            .expect("published");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while !tls.trusted_roots().contains(&der(&org_ca)) {
            assert!(tokio::time::Instant::now() < deadline, "never trusted");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }

        trust.channel_removed("mychannel");
        assert_eq!(tls.trusted_roots(), vec![der(&ca)]);
        // A late config of the removed channel changes nothing.
        trust.inner.update(
            "mychannel",
            generation,
            &config_with(vec![(
                keys::APPLICATION_GROUP,
                "Org1",
                org("Org1MSP", vec![org_ca.pem().into()], vec![]),
            )]),
        );
        assert_eq!(tls.trusted_roots(), vec![der(&ca)]);
    }
}
