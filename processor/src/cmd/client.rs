//! The small client every remote command shares: where the processor is, the
//! admin token, and one way to run a request and print its JSON answer.

use std::future::Future;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use wattstream_sdk::client::ProcessorClient;

/// A running processor's admin API.
#[derive(Args, Clone)]
pub struct Remote {
    /// The processor's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Admin bearer token.
    #[arg(long, env = "WATTSTREAM_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Trust only this CA (PEM) for an https:// processor with a private CA.
    #[arg(long, env = "WATTSTREAM_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Remote {
    /// Runs `request` against the processor and prints its answer as JSON.
    pub fn call<F, Fut>(&self, request: F) -> Result<i32>
    where
        F: FnOnce(ProcessorClient) -> Fut,
        Fut: Future<Output = Result<serde_json::Value, wattstream_sdk::client::ClientError>>,
    {
        call(
            &self.server,
            Some(self.token.clone()),
            self.ca_cert.as_deref(),
            request,
        )
    }
}

/// A running processor's public API: the admin token is optional.
#[derive(Args, Clone)]
pub struct Public {
    /// The processor's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Admin bearer token, where the call may use one.
    #[arg(long, env = "WATTSTREAM_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust only this CA (PEM) for an https:// processor with a private CA.
    #[arg(long, env = "WATTSTREAM_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Public {
    /// Runs `request` against the processor and prints its answer as JSON.
    pub fn call<F, Fut>(&self, request: F) -> Result<i32>
    where
        F: FnOnce(ProcessorClient) -> Fut,
        Fut: Future<Output = Result<serde_json::Value, wattstream_sdk::client::ClientError>>,
    {
        call(&self.server, self.token.clone(), self.ca_cert.as_deref(), request)
    }

    /// Runs `request` and returns its answer.
    pub fn fetch<F, Fut>(&self, request: F) -> Result<serde_json::Value>
    where
        F: FnOnce(ProcessorClient) -> Fut,
        Fut: Future<Output = Result<serde_json::Value, wattstream_sdk::client::ClientError>>,
    {
        let client = ProcessorClient::with_ca(
            &self.server,
            self.token.clone(),
            Duration::from_secs(60),
            self.ca_cert.as_deref(),
        )?;
        Ok(super::runtime()?.block_on(request(client))?)
    }
}

fn call<F, Fut>(server: &str, token: Option<String>, ca: Option<&std::path::Path>, request: F) -> Result<i32>
where
    F: FnOnce(ProcessorClient) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, wattstream_sdk::client::ClientError>>,
{
    let client = ProcessorClient::with_ca(server, token, Duration::from_secs(60), ca)?;
    let answer = super::runtime()?.block_on(request(client))?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(0)
}

/// `KEY=VALUE` for clap.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}
