//! A client of the channel participation API (what Fabric's `osnadmin` does):
//! `ordo channel join|list|info|remove|fetch|update` and the tests use it.
//! Plain HTTP, or HTTPS trusting the orderer's TLS CA and, for mutual TLS,
//! presenting a client certificate (osnadmin's `--ca-file`, `--client-cert`,
//! `--client-key`).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::runtime::server::participation::{
    CHANNELS_PATH, CONFIG_BLOCK_FIELD, CONFIG_UPDATE_ENVELOPE_FIELD,
};

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("admin request to {url} failed: {reason}")]
    Request { url: String, reason: String },
    #[error("reading orderer CA certificate: {0}")]
    ReadCa(std::io::Error),
    #[error("failed to add ca-file PEM to cert pool: {0}")]
    CaPem(String),
    #[error("loading client cert/key pair: {0}")]
    ClientPair(String),
    #[error("--client-cert and --client-key go together")]
    HalfPair,
    #[error("invalid admin address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("invalid TLS settings: {0}")]
    Tls(#[from] rustls::Error),
}

/// An answer of the API: the HTTP status, headers and body as sent.
#[derive(Debug, Clone)]
pub struct AdminAnswer {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body's bytes (a fetched block is binary).
    pub raw: Bytes,
    /// The body as text.
    pub body: String,
}

impl AdminAnswer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (null for an empty body or one that is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.raw).unwrap_or(serde_json::Value::Null)
    }

    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    }
}

/// The TLS material of a client: the CAs it trusts for the orderer's
/// certificate and, for mutual TLS, its own certificate and key (PEM).
#[derive(Debug, Clone, Default)]
pub struct AdminTls {
    pub ca_pem: Vec<u8>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
}

impl AdminTls {
    /// Reads the files osnadmin's flags name.
    pub fn from_files(
        ca_file: &Path,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<AdminTls, AdminClientError> {
        let ca_pem = std::fs::read(ca_file).map_err(AdminClientError::ReadCa)?;
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| AdminClientError::ClientPair(format!("{}: {e}", path.display())))
        };
        let (client_cert_pem, client_key_pem) = match (client_cert, client_key) {
            (Some(cert), Some(key)) => (Some(read(cert)?), Some(read(key)?)),
            (None, None) => (None, None),
            _ => return Err(AdminClientError::HalfPair),
        };
        Ok(AdminTls {
            ca_pem,
            client_cert_pem,
            client_key_pem,
        })
    }

    fn client_config(&self) -> Result<ClientConfig, AdminClientError> {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let certificate = certificate.map_err(|e| AdminClientError::CaPem(e.to_string()))?;
            roots
                .add(certificate)
                .map_err(|e| AdminClientError::CaPem(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(AdminClientError::CaPem("no certificate found".into()));
        }
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots);
        let mut config = match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| AdminClientError::ClientPair(e.to_string()))?;
                if chain.is_empty() {
                    return Err(AdminClientError::ClientPair(
                        "no certificate in the client certificate file".into(),
                    ));
                }
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| AdminClientError::ClientPair(e.to_string()))?;
                builder.with_client_auth_cert(chain, key)?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

#[derive(Clone)]
struct Secure {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

/// Talks to one orderer's admin listener (`host:port`).
#[derive(Clone)]
pub struct AdminClient {
    /// `host:port`, also the Host header.
    authority: String,
    scheme: &'static str,
    tls: Option<Secure>,
}

impl AdminClient {
    /// A plain HTTP client.
    pub fn new(address: &str) -> AdminClient {
        AdminClient {
            authority: authority(address),
            scheme: "http",
            tls: None,
        }
    }

    /// An HTTPS client: the orderer's certificate must chain to `tls.ca_pem`
    /// and name the address's host.
    pub fn with_tls(address: &str, tls: &AdminTls) -> Result<AdminClient, AdminClientError> {
        let authority = authority(address);
        let host = host_of(&authority);
        let server_name =
            ServerName::try_from(host.to_string()).map_err(|e| AdminClientError::Address {
                address: address.to_string(),
                reason: e.to_string(),
            })?;
        let connector = TlsConnector::from(Arc::new(tls.client_config()?));
        Ok(AdminClient {
            authority,
            scheme: "https",
            tls: Some(Secure {
                connector,
                server_name,
            }),
        })
    }

    /// Joins the channel of `config_block` (the block's bytes).
    pub async fn join(&self, config_block: Vec<u8>) -> Result<AdminAnswer, AdminClientError> {
        let (content_type, body) = form(CONFIG_BLOCK_FIELD, "config.block", &config_block);
        self.request(
            Method::POST,
            CHANNELS_PATH,
            &[("content-type", &content_type)],
            body,
        )
        .await
    }

    pub async fn list(&self) -> Result<AdminAnswer, AdminClientError> {
        self.get(CHANNELS_PATH).await
    }

    pub async fn info(&self, channel: &str) -> Result<AdminAnswer, AdminClientError> {
        self.get(&format!("{CHANNELS_PATH}/{channel}")).await
    }

    pub async fn remove(&self, channel: &str) -> Result<AdminAnswer, AdminClientError> {
        let path = format!("{CHANNELS_PATH}/{channel}");
        self.request(Method::DELETE, &path, &[], Bytes::new()).await
    }

    /// One block: `newest`, `oldest`, `config` or a number. On 200 the body
    /// is the marshalled block.
    pub async fn fetch(&self, channel: &str, block: &str) -> Result<AdminAnswer, AdminClientError> {
        self.get(&format!("{CHANNELS_PATH}/{channel}/blocks/{block}"))
            .await
    }

    /// Submits a config update (a marshalled CONFIG_UPDATE envelope).
    pub async fn update(&self, envelope: Vec<u8>) -> Result<AdminAnswer, AdminClientError> {
        let (content_type, body) = form(
            CONFIG_UPDATE_ENVELOPE_FIELD,
            "config-update.envelope",
            &envelope,
        );
        self.request(
            Method::PUT,
            CHANNELS_PATH,
            &[("content-type", &content_type)],
            body,
        )
        .await
    }

    async fn get(&self, path: &str) -> Result<AdminAnswer, AdminClientError> {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// Any request on one new connection: `path` with its query, headers by
    /// name. What the commands above send, and what tests send to probe.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<AdminAnswer, AdminClientError> {
        let url = format!("{}://{}{path}", self.scheme, self.authority);
        let failed = |reason: String| AdminClientError::Request {
            url: url.clone(),
            reason,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority);
        for (name, value) in headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| failed(e.to_string()))?;
            let value = HeaderValue::from_str(value).map_err(|e| failed(e.to_string()))?;
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| failed(e.to_string()))?;
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| failed(chain(&e)))?;
        let answer = match &self.tls {
            Some(secure) => {
                let stream = secure
                    .connector
                    .connect(secure.server_name.clone(), tcp)
                    .await
                    .map_err(|e| failed(chain(&e)))?;
                exchange(stream, request).await
            }
            None => exchange(tcp, request).await,
        };
        answer.map_err(failed)
    }
}

/// Sends one request over `io` and reads the whole answer.
async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<AdminAnswer, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| chain(&e))?;
    let connection = tokio::spawn(connection);
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        // The connection's own error (the TLS alert of a refusal) says more.
        Err(e) => {
            return Err(match connection.await {
                Ok(Err(cause)) => chain(&cause),
                _ => chain(&e),
            })
        }
    };
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let raw = body.collect().await.map_err(|e| chain(&e))?.to_bytes();
    drop(sender);
    let _ = connection.await;
    Ok(AdminAnswer {
        status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&raw).into_owned(),
        raw,
    })
}

/// An error and its causes, one line: the TLS alert that refused a client
/// is usually the innermost.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// `host:port` from an address that may carry a scheme.
fn authority(address: &str) -> String {
    let address = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address);
    address.trim_end_matches('/').to_string()
}

/// The host of `host:port` or `[v6]:port`.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host)
}

/// A multipart form of one file part, as Go's `CreateFormFile` writes it:
/// the Content-Type (with its boundary) and the body.
fn form(field: &str, file_name: &str, data: &[u8]) -> (String, Bytes) {
    let boundary = hex::encode(rand::random::<[u8; 30]>());
    let mut body = Vec::with_capacity(data.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; \
             filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/form-data; boundary={boundary}"),
        Bytes::from(body),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_hosts() {
        assert_eq!(authority("http://127.0.0.1:9443/"), "127.0.0.1:9443");
        assert_eq!(
            authority("orderer.example.com:7053"),
            "orderer.example.com:7053"
        );
        assert_eq!(host_of("127.0.0.1:9443"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9443"), "::1");
        assert_eq!(host_of("orderer.example.com:7053"), "orderer.example.com");
    }

    #[test]
    fn a_form_has_one_file_part() {
        let (content_type, body) = form("config-block", "config.block", b"\x00\x01");
        let boundary = content_type
            .strip_prefix("multipart/form-data; boundary=")
            .expect("boundary");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"config-block\"; filename=\"config.block\""));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
    }

    #[test]
    fn tls_settings_need_a_ca() {
        let tls = AdminTls {
            ca_pem: b"not a pem".to_vec(),
            ..AdminTls::default()
        };
        let err = AdminClient::with_tls("127.0.0.1:1", &tls)
            .err()
            .expect("refused");
        assert!(
            err.to_string()
                .starts_with("failed to add ca-file PEM to cert pool"),
            "{err}"
        );
    }
}
