//! An async HTTP client for the processor's API (DESIGN §3), behind the `client`
//! feature so the core of the sdk stays free of tokio. TLS is rustls with the
//! `ring` provider; no OpenSSL.

use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

/// Why a call to the processor failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The request did not complete (connection refused, timeout, TLS...).
    #[error("request to {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The processor answered with an error status.
    #[error("{url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    /// The answer was not the JSON expected.
    #[error("{url} answered with unexpected JSON: {reason}")]
    BadAnswer { url: String, reason: String },
    /// The trust settings (a CA file) could not be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

impl ClientError {
    /// The HTTP status, when the processor answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Why the server's certificate was refused, when that is what failed
    /// (unknown issuer, wrong name, expired...): the link is up but the
    /// server is not the one we trust, which retrying will not fix.
    pub fn certificate_error(&self) -> Option<String> {
        match self {
            ClientError::Transport { source, .. } => crate::tls::certificate_problem(source),
            _ => None,
        }
    }
}

pub use crate::wire::{BatchAnswer, EventResult, EventStatus, RewardsView};

/// A client for one processor.
#[derive(Clone)]
pub struct ProcessorClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ProcessorClient {
    /// `base` is the processor's URL (`http://host:port`); `token` the admin bearer
    /// token, needed only for admin calls.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Self, ClientError> {
        Self::with_ca(base, token, timeout, None)
    }

    /// Like [`new`](Self::new); with `ca`, an `https://` processor must present
    /// a certificate issued by that CA (and no other); without it, by one the
    /// system trusts.
    pub fn with_ca(
        base: &str,
        token: Option<String>,
        timeout: Duration,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        // Installing twice is harmless; the first provider stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)));
        if let Some(ca) = ca {
            let config = crate::tls::client_config(Some(ca))?;
            builder = builder.tls_backend_preconfigured(rustls::ClientConfig::clone(&config));
        }
        let http = builder.build().map_err(|source| ClientError::Transport {
            url: base.to_string(),
            source,
        })?;
        Ok(ProcessorClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<(u16, String), ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().await.map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })?;
        Ok((status, body))
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let (status, body) = self.send(req, url).await?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Status {
                url: url.to_string(),
                status,
                body,
            });
        }
        serde_json::from_str(&body).map_err(|e| ClientError::BadAnswer {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// Posts envelope bodies as one batch (a JSON array of the bodies, byte for
    /// byte) and returns the per-envelope results in order.
    pub async fn post_events(&self, bodies: &[String]) -> Result<Vec<EventResult>, ClientError> {
        let url = self.url("/v1/events");
        let mut batch = String::with_capacity(bodies.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
        batch.push('[');
        for (i, b) in bodies.iter().enumerate() {
            if i > 0 {
                batch.push(',');
            }
            batch.push_str(b);
        }
        batch.push(']');
        let req = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(batch);
        let (status, body) = self.send(req, &url).await?;
        if status != 200 {
            return Err(ClientError::Status { url, status, body });
        }
        let answer: BatchAnswer = serde_json::from_str(&body).map_err(|e| ClientError::BadAnswer {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if answer.results.len() != bodies.len() {
            return Err(ClientError::BadAnswer {
                url,
                reason: format!("{} results for {} envelopes", answer.results.len(), bodies.len()),
            });
        }
        Ok(answer.results)
    }

    /// Posts one envelope. The processor's verdict comes back as `Ok` whether it
    /// accepted or rejected it (HTTP 200 or a 4xx with a JSON verdict); other
    /// failures are errors.
    pub async fn post_event(&self, body: &str) -> Result<EventResult, ClientError> {
        let url = self.url("/v1/events");
        let req = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string());
        let (status, text) = self.send(req, &url).await?;
        match serde_json::from_str::<EventResult>(&text) {
            Ok(result) if status == 200 || (400..500).contains(&status) => Ok(result),
            _ => Err(ClientError::Status {
                url,
                status,
                body: text,
            }),
        }
    }

    /// Registers a device by its public key (admin).
    pub async fn register_device(
        &self,
        public_key_hex: &str,
        owner: Option<&str>,
    ) -> Result<Value, ClientError> {
        let url = self.url("/v1/devices");
        let body = serde_json::json!({ "public_key": public_key_hex, "owner": owner });
        self.json(self.http.post(&url).json(&body), &url).await
    }

    /// Lists registered devices (admin).
    pub async fn list_devices(&self) -> Result<Value, ClientError> {
        let url = self.url("/v1/devices");
        self.json(self.http.get(&url), &url).await
    }

    /// Revokes a device (admin).
    pub async fn revoke_device(&self, device_id: &str) -> Result<Value, ClientError> {
        let url = self.url(&format!("/v1/devices/{device_id}"));
        self.json(self.http.delete(&url), &url).await
    }

    /// A device's read token (admin): it lets the owner read the device's readings.
    pub async fn read_token(&self, device_id: &str) -> Result<Value, ClientError> {
        let url = self.url(&format!("/v1/devices/{device_id}/read-token"));
        self.json(self.http.post(&url), &url).await
    }

    /// A device's registration, last reading and counts (admin or read token).
    pub async fn device(&self, device_id: &str) -> Result<Value, ClientError> {
        let url = self.url(&format!("/v1/devices/{device_id}"));
        self.json(self.http.get(&url), &url).await
    }

    /// An admin call with a raw body (for example a wasm module), answered with JSON.
    pub async fn post_bytes(&self, path: &str, body: Vec<u8>) -> Result<Value, ClientError> {
        let url = self.url(path);
        let req = self
            .http
            .post(&url)
            .header("content-type", "application/octet-stream")
            .body(body);
        self.json(req, &url).await
    }

    /// A POST with a JSON body, answered with JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path);
        self.json(self.http.post(&url).json(body), &url).await
    }

    /// A PUT with a JSON body.
    pub async fn put_json(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let url = self.url(path);
        self.json(self.http.put(&url).json(body), &url).await
    }

    /// A DELETE, answered with JSON.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        let url = self.url(path);
        self.json(self.http.delete(&url), &url).await
    }

    /// Any GET on the API, as JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        self.get(path).await
    }

    /// A GET whose answer is text (`/metrics`), as it came.
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let url = self.url(path);
        let (status, body) = self.send(self.http.get(&url), &url).await?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Status { url, status, body });
        }
        Ok(body)
    }

    /// A GET parsed into the answer's wire type.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        self.json(self.http.get(&url), &url).await
    }

    /// A device's balance, rate, latest seal and proof.
    pub async fn rewards(&self, device_id: &str) -> Result<RewardsView, ClientError> {
        self.get(&format!("/v1/devices/{device_id}/rewards")).await
    }

    /// The ledger head and the processor key.
    pub async fn ledger_head(&self) -> Result<crate::wire::LedgerHead, ClientError> {
        self.get("/v1/ledger/head").await
    }
}
