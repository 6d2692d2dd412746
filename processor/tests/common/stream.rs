//! `GET /v1/stream` read as the dashboard reads it: one Server-Sent Events
//! frame at a time, with no overall timeout (a stream stays open).

use std::time::Duration;

use serde_json::Value;

use super::{Server, client};

/// A live stream read as the dashboard reads it: one SSE frame at a time.
pub struct Stream {
    resp: reqwest::Response,
    buf: String,
}

impl Stream {
    /// `query`: `""`, `"device=ID"` or `"devices=A,B"`.
    pub async fn open(server: &Server, query: &str, token: &str) -> Result<Stream, (u16, Value)> {
        let url = format!("{}/v1/stream?{query}", server.url);
        let _ = client(); // installs the TLS provider reqwest needs
        // No overall timeout: a stream stays open.
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if resp.status() != 200 {
            let s = resp.status().as_u16();
            return Err((s, resp.json().await.unwrap_or(Value::Null)));
        }
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut s = Stream {
            resp,
            buf: String::new(),
        };
        let (name, hello) = s.next().await.expect("a hello frame");
        assert_eq!(
            (name.as_str(), hello["heartbeat_s"].as_u64()),
            ("hello", Some(15))
        );
        Ok(s)
    }

    /// The next event (comments skipped), or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(cut) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..cut + 2).collect();
                let name = frame.lines().find_map(|l| l.strip_prefix("event: "));
                let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(n), Some(d)) = (name, data) {
                    return Some((n.to_string(), serde_json::from_str(d).unwrap()));
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.resp.chunk())
                .await
                .expect("an event within a minute")
                .expect("the stream reads");
            self.buf.push_str(std::str::from_utf8(&chunk?).unwrap());
        }
    }

    /// The next event named `name`, skipping others.
    pub async fn next_named(&mut self, name: &str) -> Value {
        loop {
            let (n, v) = self.next().await.expect("the stream is open");
            if n == name {
                return v;
            }
        }
    }

    /// Events until `readings` readings and at least one `ledger` event
    /// have come (in whatever order they interleave): the readings.
    pub async fn readings_and_a_ledger_event(&mut self, readings: usize) -> Vec<Value> {
        let (mut got, mut ledger) = (Vec::new(), false);
        while got.len() < readings || !ledger {
            match self.next().await.expect("the stream is open") {
                (n, v) if n == "reading" => got.push(v),
                (n, v) if n == "ledger" => {
                    assert!(v["credits"].as_u64().unwrap() >= 1, "{v}");
                    ledger = true;
                }
                _ => {}
            }
        }
        got
    }
}
