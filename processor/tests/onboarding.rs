//! Self-service onboarding against a real processor: device requests from
//! `power-meter bind`, owner signatures from Python `eth-account`. Every
//! refusal names its reason and leaves the device and its records as they
//! were. Transfers are in tests/transfers.rs.

mod common;

use std::path::Path;

use common::onboard::*;
use common::wallet::Wallet;
use common::*;
use serde_json::{Value, json};
use wattstream_sdk::DeviceKey;
use wattstream_sdk::binding::{DEVICE_DOMAIN, claim_message};

#[tokio::test]
async fn a_device_and_its_owners_wallet_bind_it_and_anyone_can_verify_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = open_server(dir.path());
    let alice = Wallet::numbered(0x11);
    let (key, request) = bind(dir.path(), "m1", &alice.address, 1337);
    let id = request["device_id"].as_str().unwrap().to_string();
    let signature = alice.sign(request["owner_message"].as_str().unwrap());
    let request_file = dir.path().join("request.json");
    std::fs::write(&request_file, request.to_string()).unwrap();

    // Through the CLI, with no admin token: the signatures are the authority.
    let out = cli(&[
        "device",
        "claim",
        "--server",
        &server.url,
        "--request",
        request_file.to_str().unwrap(),
        "--owner-signature",
        &signature,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let record: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(record["kind"], "claim");
    assert_eq!(record["owner"], alice.lower());
    assert_eq!(owner_of(&server, &id).await, Some(alice.lower()));

    // The device is registered: its signed readings are accepted.
    let device_key = wattstream_sdk::load_key(&key).unwrap();
    let reading = wattstream_sdk::Reading::new(3.5, wattstream_sdk::time::unix_now()).with_seq(1);
    let (s, answer) = post(
        &format!("{}/v1/events", server.url),
        device_key.sign_reading(&reading),
    )
    .await;
    assert_eq!(
        (s, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );

    let served = bindings(&server, &id).await;
    assert_eq!(served["verified"], true, "{served}");
    assert_eq!(served["owners"][0]["owner"], alice.lower());
    let out = cli(&["device", "verify-bindings", "--server", &server.url, "--id", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Each refusal: its reason, its status, and nothing changed.
#[tokio::test]
async fn every_bad_claim_is_refused_with_its_own_reason_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = open_server(dir.path());
    let (alice, mallory) = (Wallet::numbered(0x11), Wallet::numbered(0x22));

    // A device bound once; its request and signature kept for the replay.
    let (key, bound) = bind(dir.path(), "bound", &alice.address, 1337);
    let bound_sig = alice.sign(bound["owner_message"].as_str().unwrap());
    assert_eq!(claim(&server, &bound, &bound_sig, None).await.0, 201);
    let bound_id = bound["device_id"].as_str().unwrap().to_string();

    // A free device and a fresh request for it.
    let (free_key, fresh) = bind(dir.path(), "free", &alice.address, 1337);
    let free_id = fresh["device_id"].as_str().unwrap().to_string();
    let fresh_sig = alice.sign(fresh["owner_message"].as_str().unwrap());
    let device = wattstream_sdk::load_key(&free_key).unwrap();

    // The device re-signs whatever it is given (its owner is the attacker).
    let resign = |mut r: Value, device: &DeviceKey| {
        let message = claim_message(
            r["device_id"].as_str().unwrap(),
            r["public_key"].as_str().unwrap(),
            r["owner"].as_str().unwrap(),
            r["chain_id"].as_u64().unwrap(),
            r["nonce"].as_str().unwrap(),
            r["issued_at"].as_u64().unwrap(),
        );
        r["device_signature"] = json!(
            device
                .sign(format!("{DEVICE_DOMAIN}{message}").as_bytes())
                .to_hex()
        );
        r["owner_message"] = json!(message);
        r
    };

    let other_chain = bind_with(&free_key, &alice.address, 1);
    let other_chain_sig = alice.sign(other_chain["owner_message"].as_str().unwrap());
    let mut reused_nonce = fresh.clone();
    reused_nonce["nonce"] = bound["nonce"].clone();
    let reused_nonce = resign(reused_nonce, &device);
    let reused_nonce_sig = alice.sign(reused_nonce["owner_message"].as_str().unwrap());
    let mut expired = fresh.clone();
    expired["issued_at"] = json!(wattstream_sdk::time::unix_now() - 2 * 86_400);
    let expired = resign(expired, &device);
    let expired_sig = alice.sign(expired["owner_message"].as_str().unwrap());
    let mut ahead = fresh.clone();
    ahead["issued_at"] = json!(wattstream_sdk::time::unix_now() + 3600);
    let ahead = resign(ahead, &device);
    let ahead_sig = alice.sign(ahead["owner_message"].as_str().unwrap());
    // The owner signed a message with other fields (another nonce) than the request's.
    let other_fields = bind_with(&free_key, &alice.address, 1337);
    let other_fields_sig = alice.sign(other_fields["owner_message"].as_str().unwrap());
    let mut edited = fresh.clone();
    edited["owner_message"] = json!(
        fresh["owner_message"]
            .as_str()
            .unwrap()
            .replace("chain id: 1337", "chain id: 1")
    );
    // A thief's key signs a request naming the victim device's key.
    let mut stolen = fresh.clone();
    stolen["device_signature"] = json!(DeviceKey::generate().sign(b"anything").to_hex());
    // Mallory binds the already bound device to herself with its own fresh request.
    let rebind = bind_with(&key, &mallory.address, 1337);
    let rebind_sig = mallory.sign(rebind["owner_message"].as_str().unwrap());

    let cases: Vec<(&str, &Value, String, u16, &str)> = vec![
        (
            "the same request again",
            &bound,
            bound_sig.clone(),
            409,
            "nonce_reused",
        ),
        (
            "another request reusing a nonce",
            &reused_nonce,
            reused_nonce_sig,
            409,
            "nonce_reused",
        ),
        (
            "a request dated an hour ahead",
            &ahead,
            ahead_sig,
            400,
            "request_from_future",
        ),
        (
            "the wrong chain id",
            &other_chain,
            other_chain_sig,
            400,
            "wrong_chain",
        ),
        (
            "a signature by another wallet",
            &fresh,
            mallory.sign(fresh["owner_message"].as_str().unwrap()),
            400,
            "owner_signature_mismatch",
        ),
        (
            "a signature over other fields",
            &fresh,
            other_fields_sig,
            400,
            "owner_signature_mismatch",
        ),
        (
            "an owner message that is not the fields'",
            &edited,
            fresh_sig.clone(),
            400,
            "owner_message_mismatch",
        ),
        (
            "a device signature by another key",
            &stolen,
            fresh_sig.clone(),
            400,
            "bad_device_signature",
        ),
        (
            "a request two days old",
            &expired,
            expired_sig,
            400,
            "request_expired",
        ),
        (
            "a device already bound",
            &rebind,
            rebind_sig,
            409,
            "already_bound",
        ),
        (
            "a signature that is not one",
            &fresh,
            "0x1234".into(),
            400,
            "bad_owner_signature",
        ),
    ];
    for (name, request, signature, status, reason) in cases {
        let (s, answer) = claim(&server, request, &signature, None).await;
        assert_eq!(
            (s, answer["reason"].as_str()),
            (status, Some(reason)),
            "{name}: {answer}"
        );
        assert_eq!(owner_of(&server, &bound_id).await, Some(alice.lower()), "{name}");
        assert_eq!(
            owner_of(&server, &free_id).await,
            None,
            "{name}: the free device was registered"
        );
        assert_eq!(
            bindings(&server, &bound_id).await["records"]
                .as_array()
                .unwrap()
                .len(),
            1,
            "{name}"
        );
        assert!(
            bindings(&server, &free_id).await["records"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{name}"
        );
    }
    // And the fresh request, untouched, still binds.
    assert_eq!(claim(&server, &fresh, &fresh_sig, None).await.0, 201);
    // An operator sees each outcome in /metrics.
    let metrics = metrics_text(&server).await;
    for line in [
        r#"wattstream_onboarding_total{request="claim",outcome="recorded"} 2"#,
        r#"wattstream_onboarding_total{request="claim",outcome="nonce_reused"} 2"#,
        r#"wattstream_onboarding_total{request="claim",outcome="owner_signature_mismatch"} 2"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in:\n{metrics}");
    }

    // A revoked device cannot be bound or moved again, even unbound first by
    // its owner.
    let t = transfer_request(&bound_id, &alice.address, None);
    let m = t["owner_message"].as_str().unwrap();
    assert_eq!(
        transfer(&server, &t, Some(&alice.sign(m)), None, None).await.0,
        200
    );
    let (s, a) = admin(
        reqwest::Method::DELETE,
        &format!("{}/v1/devices/{bound_id}", server.url),
        TOKEN,
        None,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    let again = bind_with(&key, &mallory.address, 1337);
    let (s, a) = claim(
        &server,
        &again,
        &mallory.sign(again["owner_message"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((s, a["reason"].as_str()), (409, Some("revoked_device")), "{a}");
    assert_eq!(
        bindings(&server, &bound_id).await["records"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn under_the_makers_policy_only_devices_certified_by_a_listed_maker_join() {
    let dir = tempfile::tempdir().unwrap();
    let (maker_key, stranger_key) = (dir.path().join("maker.pem"), dir.path().join("stranger.pem"));
    let mut makers = Vec::new();
    for key in [&maker_key, &stranger_key] {
        let out = cli(&["maker", "keygen", "--key", key.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        makers.push(
            text.trim()
                .strip_prefix("maker_public_key: ")
                .unwrap()
                .to_string(),
        );
    }
    let cfg = config(
        dir.path(),
        &format!(
            "[onboarding]\npolicy = \"makers\"\nmakers = [\"{}\"]\n",
            makers[0]
        ),
    );
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--admin-token", TOKEN, "--config", &cfg],
    );
    let alice = Wallet::numbered(0x11);

    // A device certified by a maker: keygen, the maker signs its key, the
    // certificate is installed beside the key and travels in the request.
    let certified = |name: &str, maker: &Path| {
        let key = dir.path().join(format!("{name}.pem"));
        let out = meter(&["keygen", "--key", key.to_str().unwrap()]);
        assert!(out.status.success());
        let public = String::from_utf8(out.stdout).unwrap();
        let public = public
            .lines()
            .find_map(|l| l.strip_prefix("public_key: "))
            .unwrap()
            .to_string();
        let cert = dir.path().join(format!("{name}.cert"));
        let out = cli(&[
            "maker",
            "sign",
            "--key",
            maker.to_str().unwrap(),
            "--public-key",
            &public,
            "--out",
            cert.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = meter(&[
            "keygen",
            "--key",
            key.to_str().unwrap(),
            "--maker-cert",
            cert.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        bind_with(&key, &alice.address, 1337)
    };
    let by_stranger = certified("s", &stranger_key);
    let (s, a) = claim(
        &server,
        &by_stranger,
        &alice.sign(by_stranger["owner_message"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((s, a["reason"].as_str()), (403, Some("unknown_maker")), "{a}");
    let (_, uncertified) = bind(dir.path(), "u", &alice.address, 1337);
    let (s, a) = claim(
        &server,
        &uncertified,
        &alice.sign(uncertified["owner_message"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(
        (s, a["reason"].as_str()),
        (403, Some("maker_certificate_required")),
        "{a}"
    );
    for r in [&by_stranger, &uncertified] {
        assert_eq!(owner_of(&server, r["device_id"].as_str().unwrap()).await, None);
    }
    let by_maker = certified("m", &maker_key);
    let (s, a) = claim(
        &server,
        &by_maker,
        &alice.sign(by_maker["owner_message"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(
        a["claim"]["maker_certificate"]["maker_public_key"],
        makers[0].as_str()
    );

    // A certificate for another device's key is refused by the meter itself.
    let other = dir.path().join("other.pem");
    assert!(
        meter(&["keygen", "--key", other.to_str().unwrap()])
            .status
            .success()
    );
    let out = meter(&[
        "keygen",
        "--key",
        other.to_str().unwrap(),
        "--maker-cert",
        dir.path().join("m.cert").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not certify"));
}

#[tokio::test]
async fn under_the_admin_policy_a_claim_needs_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(&dir.path().join("data"), &["--admin-token", TOKEN]);
    let alice = Wallet::numbered(0x11);
    let (_, request) = bind(dir.path(), "m", &alice.address, 1337);
    let sig = alice.sign(request["owner_message"].as_str().unwrap());
    let (s, a) = claim(&server, &request, &sig, None).await;
    assert_eq!((s, a["reason"].as_str()), (403, Some("onboarding_closed")), "{a}");
    let (s, a) = claim(&server, &request, &sig, Some("wrong")).await;
    assert_eq!(s, 401, "{a}");
    assert_eq!(
        owner_of(&server, request["device_id"].as_str().unwrap()).await,
        None
    );
    let (s, a) = claim(&server, &request, &sig, Some(TOKEN)).await;
    assert_eq!(s, 201, "{a}");
}
