//! A client of the channel participation API (what Fabric's `osnadmin channel`
//! does): `ordo channel join|list|info|remove` and the tests use it.

use crate::runtime::server::participation::{CHANNELS_PATH, CONFIG_BLOCK_FIELD};

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("admin request to {url} failed: {source}")]
    Request { url: String, source: reqwest::Error },
}

/// An answer of the API: the HTTP status and the body as sent.
#[derive(Debug, Clone)]
pub struct AdminAnswer {
    pub status: u16,
    pub body: String,
}

impl AdminAnswer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (null for an empty body or one that is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Talks to one orderer's admin listener (`host:port`, plaintext HTTP).
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: String,
    http: reqwest::Client,
}

impl AdminClient {
    pub fn new(address: &str) -> AdminClient {
        let base = if address.contains("://") {
            address.trim_end_matches('/').to_string()
        } else {
            format!("http://{address}")
        };
        AdminClient {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// Joins the channel of `config_block` (the block's bytes).
    pub async fn join(&self, config_block: Vec<u8>) -> Result<AdminAnswer, AdminClientError> {
        let part = reqwest::multipart::Part::bytes(config_block).file_name("config.block");
        let form = reqwest::multipart::Form::new().part(CONFIG_BLOCK_FIELD, part);
        let url = format!("{}{CHANNELS_PATH}", self.base);
        self.answer(&url, self.http.post(&url).multipart(form))
            .await
    }

    pub async fn list(&self) -> Result<AdminAnswer, AdminClientError> {
        let url = format!("{}{CHANNELS_PATH}", self.base);
        self.answer(&url, self.http.get(&url)).await
    }

    pub async fn info(&self, channel: &str) -> Result<AdminAnswer, AdminClientError> {
        let url = format!("{}{CHANNELS_PATH}/{channel}", self.base);
        self.answer(&url, self.http.get(&url)).await
    }

    pub async fn remove(&self, channel: &str) -> Result<AdminAnswer, AdminClientError> {
        let url = format!("{}{CHANNELS_PATH}/{channel}", self.base);
        self.answer(&url, self.http.delete(&url)).await
    }

    async fn answer(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<AdminAnswer, AdminClientError> {
        let failed = |source| AdminClientError::Request {
            url: url.to_string(),
            source,
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(failed)?;
        Ok(AdminAnswer { status, body })
    }
}
