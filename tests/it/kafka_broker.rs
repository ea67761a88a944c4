//! A real Kafka-protocol broker (tansu, on SQLite) for the end-to-end tests of
//! the Kafka consenter: started on a free loopback port with its own data
//! folder, killed and restarted on the same port and data at will.
//!
//! The binary is `$ORDO_KAFKA_BROKER`, else `tansu` on PATH, else
//! `~/.cargo/bin/tansu`; `scripts/kafka-broker.sh install` installs it.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use tempfile::TempDir;

/// The environment variable naming the broker binary, when not on PATH.
pub const BROKER_ENV: &str = "ORDO_KAFKA_BROKER";
/// How long a broker may take to answer after it is spawned.
const READY_PATIENCE: Duration = Duration::from_secs(60);
/// Between two readiness polls: each poll is a metadata round trip, so this
/// only keeps a broker that refuses connections from being hammered.
const READY_POLL: Duration = Duration::from_millis(50);
/// Fresh ports tried when the one found free is taken before the broker binds it.
const START_ATTEMPTS: usize = 5;
/// The log file in the data folder; kept across restarts.
const LOG_FILE: &str = "broker.log";
/// The SQLite database, relative to the data folder (the broker's working dir).
const STORAGE_ENGINE: &str = "sqlite://tansu.db";

/// One broker process on 127.0.0.1. Dropping it kills the process and
/// removes the data folder.
pub struct KafkaBroker {
    binary: PathBuf,
    port: u16,
    cluster_id: String,
    dir: TempDir,
    child: Option<Child>,
}

impl KafkaBroker {
    /// Spawns a broker on a free port with a fresh data folder and waits until
    /// it answers a metadata request.
    pub async fn start() -> KafkaBroker {
        let binary = broker_binary();
        let dir = tempfile::Builder::new()
            .prefix("ordo-kafka-")
            .tempdir()
            .expect("temporary data folder for the broker");
        // Unique, so that a broker answering on our port is known to be ours
        // (another test's broker could have taken the port meanwhile). Kept
        // across restarts: tansu files its data under the cluster id.
        let cluster_id = dir
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .expect("temporary folder name");
        let mut broker = KafkaBroker {
            binary,
            port: free_port(),
            cluster_id,
            dir,
            child: None,
        };
        // A port found free can be taken before the broker binds it: then
        // the broker exits, and another port is tried.
        for _ in 0..START_ATTEMPTS {
            broker.spawn();
            match broker.ready().await {
                Ok(()) => return broker,
                Err(NotReady::Exited(_)) => {
                    broker.kill();
                    broker.port = free_port();
                }
                Err(not_ready) => panic!("{not_ready}"),
            }
        }
        panic!(
            "the Kafka broker did not start in {START_ATTEMPTS} attempts; its log:\n{}",
            broker.log_tail()
        );
    }

    /// "127.0.0.1:PORT": the `bootstrap.servers` value for clients.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's process id while it runs (to read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A client configuration aimed at this broker, with nothing else set.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.address());
        config
    }

    /// Polls with metadata requests until the broker answers one. Panics with
    /// the broker's log if it exits or does not answer in time.
    pub async fn wait_ready(&mut self) {
        if let Err(not_ready) = self.ready().await {
            panic!("{not_ready}");
        }
    }

    async fn ready(&mut self) -> Result<(), NotReady> {
        let deadline = Instant::now() + READY_PATIENCE;
        let address = self.address();
        let probe: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &address)
            // librdkafka backs off up to 10 s between reconnects by default;
            // a broker that is still starting should be seen at once.
            .set("reconnect.backoff.max.ms", "100")
            .create()
            .expect("metadata client");
        let probe = Arc::new(probe);
        loop {
            if let Some(status) = self.exited() {
                return Err(NotReady::Exited(format!(
                    "the Kafka broker on {address} exited ({status}) before it answered; its log:\n{}",
                    self.log_tail()
                )));
            }
            let client = probe.clone();
            let answered = tokio::task::spawn_blocking(move || {
                client.client().fetch_cluster_id(Duration::from_secs(1))
            })
            .await
            .expect("metadata poll");
            match answered {
                Some(cluster_id) if cluster_id == self.cluster_id => return Ok(()),
                Some(other) => {
                    // Someone else's broker on our port: ours will exit.
                    tracing::debug!(%other, "another broker answers on {address}");
                }
                None => {}
            }
            if Instant::now() > deadline {
                return Err(NotReady::Silent(format!(
                    "the Kafka broker on {address} did not answer within {READY_PATIENCE:?}; its log:\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Creates a topic with one partition (what a Fabric channel uses), via
    /// the CreateTopics API; falls back to the broker's CLI if the API fails.
    pub async fn create_topic(&self, name: &str) {
        match self.create_topic_by_api(name).await {
            Ok(()) => {}
            Err(api_error) => {
                let output = Command::new(&self.binary)
                    .current_dir(self.dir.path())
                    .args(["topic", "create", name, "--partitions", "1", "--broker"])
                    .arg(format!("tcp://{}", self.address()))
                    .output()
                    .expect("runs the broker's topic command");
                assert!(
                    output.status.success(),
                    "topic {name} could not be created: CreateTopics said {api_error}; the CLI said {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
    }

    async fn create_topic_by_api(&self, name: &str) -> Result<(), String> {
        let admin: AdminClient<DefaultClientContext> = self
            .client_config()
            .create()
            .map_err(|error| error.to_string())?;
        let topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics([&topic], &options)
            .await
            .map_err(|error| error.to_string())?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(format!("{topic}: {code:?}")),
            }
        }
        Ok(())
    }

    /// SIGKILL: no clean shutdown, as in a crash. The data folder stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already gone is fine: the point is that it no longer runs.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the broker if it runs, then starts it again on the same port and
    /// data folder and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_ready().await;
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the broker already runs");
        let log = self.open_log();
        let url = format!("tcp://{}", self.address());
        let child = Command::new(&self.binary)
            .current_dir(self.dir.path())
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", STORAGE_ENGINE])
            .args(["--cluster-id", &self.cluster_id])
            .arg("--silent")
            // Flags win over these, but a stray value must not leak in.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run the Kafka broker {}: {error}",
                    self.binary.display()
                )
            });
        self.child = Some(child);
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
    }

    fn open_log(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(LOG_FILE))
            .expect("broker log file")
    }

    /// What the broker wrote to stdout and stderr so far, over all its runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Why a spawned broker is not ready; each carries the message and log.
#[derive(Debug)]
enum NotReady {
    Exited(String),
    Silent(String),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Exited(message) | NotReady::Silent(message) => formatter.write_str(message),
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    // The port is free when read; another process could take it before the
    // broker binds, which `wait_ready` reports as an early exit.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// Finds the broker binary, or panics saying how to install it.
pub fn broker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(BROKER_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{BROKER_ENV}={} is not a file",
            path.display()
        );
        return path;
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|cargo_home| cargo_home.join("bin"));
    on_path
        .into_iter()
        .chain(in_cargo_home)
        .map(|dir| dir.join("tansu"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no Kafka-protocol broker: install tansu with `scripts/kafka-broker.sh install` \
                 (or set {BROKER_ENV} to a tansu binary)"
            )
        })
}
