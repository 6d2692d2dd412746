//! HTTPS: the processor serves TLS from PEM files, reloads them on SIGHUP
//! without dropping connections, and a meter checks whom it talks to (a
//! pinned CA, or the system roots). Certificates are made here with rcgen.

mod common;

use std::path::Path;
use std::time::Duration;

use common::meter::Meter;
use common::pki::{Ca, client_trusting};
use common::{Server, TOKEN, cli, wait_for};
use serde_json::{Value, json};

fn https_server(dir: &Path, ca: &Ca) -> (Server, std::path::PathBuf, std::path::PathBuf) {
    let (crt, key) = ca.server(dir, "server");
    let cfg = dir.join("wattstream.toml");
    // Long idle keep-alive, so the SIGHUP test's pooled connection stays open.
    std::fs::write(&cfg, "[limits]\nheader_read_timeout_s = 120\n").unwrap();
    let server = Server::start_with(
        &dir.join("data"),
        &[
            "--admin-token",
            TOKEN,
            "--config",
            cfg.to_str().unwrap(),
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    (server, crt, key)
}

async fn call(client: &reqwest::Client, method: reqwest::Method, url: &str, body: Option<Value>) -> Value {
    let mut req = client.request(method, url).bearer_auth(TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the request completes");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    resp.json().await.unwrap()
}

async fn stored(client: &reqwest::Client, server: &Server, device: &str) -> usize {
    let url = format!("{}/v1/devices/{device}/events?limit=1000", server.url);
    call(client, reqwest::Method::GET, &url, None).await["events"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_pinned_to_the_processors_ca_delivers_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("WattStream test CA");
    let (server, _, _) = https_server(dir.path(), &ca);
    let ca_file = ca.write(dir.path(), "ca.pem");
    let https = client_trusting(&ca.pem);
    let mdir = dir.path().join("meter");
    let (config, id, pk) =
        Meter::provision(&mdir, &server.url, &format!("tls_ca = \"{}\"", ca_file.display()));
    // Registered with the CLI, which trusts the private CA through --ca-cert.
    let (url, ca_path) = (server.url.as_str(), ca_file.to_str().unwrap());
    let add = cli(&[
        "device",
        "add",
        "--server",
        url,
        "--token",
        TOKEN,
        "--public-key",
        &pk,
        "--ca-cert",
        ca_path,
    ]);
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let refused = cli(&["device", "list", "--server", url, "--token", TOKEN]);
    assert!(
        !refused.status.success(),
        "without the CA the CLI refuses the server"
    );
    let meter = Meter::start(&mdir, &config, id.clone(), pk);
    wait_for(
        "three windows stored over HTTPS",
        Duration::from_secs(60),
        async || stored(&https, &server, &id).await >= 3,
    )
    .await;
    wait_for("the meter to say online", Duration::from_secs(10), async || {
        meter.state().is_some_and(|s| s["link"]["status"] == "online")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_that_does_not_trust_the_certificate_says_so_and_keeps_its_windows() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("the processor's CA");
    let other = Ca::new("some other CA");
    let (server, _, _) = https_server(dir.path(), &ca);
    let https = client_trusting(&ca.pem);
    let other_file = other.write(dir.path(), "other.pem");
    // One meter pins the wrong CA; one trusts the system roots, which do not
    // hold a private CA either.
    let mut meters = Vec::new();
    for (name, extra) in [
        ("pinned", format!("tls_ca = \"{}\"", other_file.display())),
        ("system", String::new()),
    ] {
        let mdir = dir.path().join(name);
        let (config, id, pk) = Meter::provision(&mdir, &server.url, &extra);
        let devices = format!("{}/v1/devices", server.url);
        call(
            &https,
            reqwest::Method::POST,
            &devices,
            Some(json!({"public_key": pk})),
        )
        .await;
        meters.push(Meter::start(&mdir, &config, id, pk));
    }
    for meter in &meters {
        wait_for(
            "the meter to report an untrusted link",
            Duration::from_secs(60),
            async || {
                meter.state().is_some_and(|s| {
                    s["link"]["status"] == "untrusted"
                        && s["link"]["outbox_depth"].as_u64() >= Some(2)
                        && s["link"]["last_send"]
                            .as_str()
                            .is_some_and(|t| t.contains("certificate"))
                })
            },
        )
        .await;
        assert_eq!(
            stored(&https, &server, &meter.device_id).await,
            0,
            "nothing got through"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_gets_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let (server, _, _) = https_server(dir.path(), &ca);
    let plain = server.url.replace("https://", "http://");
    let r = common::client().get(format!("{plain}/healthz")).send().await;
    assert!(r.is_err(), "plain HTTP must not be served on the TLS port: {r:?}");
    let ok = client_trusting(&ca.pem)
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let (server, crt, key) = https_server(dir.path(), &old_ca);
    let health = format!("{}/healthz", server.url);
    // A client with a kept-alive connection made under the old certificate.
    let kept = client_trusting(&old_ca.pem);
    assert_eq!(kept.get(&health).send().await.unwrap().status(), 200);

    // Renew: a certificate from another CA, so that which one a new
    // connection gets is visible from the outside.
    let renewed = dir.path().join("renewed");
    std::fs::create_dir_all(&renewed).unwrap();
    let (c2, k2) = new_ca.server(&renewed, "server");
    std::fs::copy(&k2, &key).unwrap();
    std::fs::copy(&c2, &crt).unwrap();
    assert!(
        client_trusting(&new_ca.pem).get(&health).send().await.is_err(),
        "the new certificate is not served before SIGHUP"
    );
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_for(
        "new connections to get the renewed certificate",
        Duration::from_secs(10),
        async || client_trusting(&new_ca.pem).get(&health).send().await.is_ok(),
    )
    .await;
    assert!(
        client_trusting(&old_ca.pem).get(&health).send().await.is_err(),
        "a new connection no longer gets the old certificate"
    );
    // So this request can only succeed on the connection opened before the reload.
    assert_eq!(kept.get(&health).send().await.unwrap().status(), 200);
}
