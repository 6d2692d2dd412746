//! Under `onboarding.policy = "open"` a claim registers the device when it is
//! new, so someone who makes up device keys (each then earns as a real meter
//! would) could add devices as fast as they can sign. The bound:
//! `open_new_devices_per_hour` self-registered devices in any hour, counted
//! in the store (racing claims cannot pass it together, a restart does not
//! reset it), on both stores. Claims of devices already registered, and
//! claims with the admin token, are not counted.

mod common;

use std::path::Path;

use common::onboard::*;
use common::wallet::Wallet;
use common::*;
use serde_json::Value;

on_both_engines!(self_service_claims_register_at_most_the_hourly_limit_of_new_devices);

/// A new device's binding request for `owner`, and the owner's signature.
fn request(dir: &Path, name: &str, owner: &Wallet) -> (Value, String) {
    let (_, request) = bind(dir, name, &owner.address, 1337);
    let signature = owner.sign(request["owner_message"].as_str().unwrap());
    (request, signature)
}

fn id(request: &Value) -> &str {
    request["device_id"].as_str().unwrap()
}

async fn self_service_claims_register_at_most_the_hourly_limit_of_new_devices(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new(engine).await;
    let cfg = config(
        dir.path(),
        "[onboarding]\npolicy = \"open\"\nopen_new_devices_per_hour = 2\n",
    );
    let data = dir.path().join("data");
    let server = store.start(&data, &["--config", &cfg]);
    let mallory = Wallet::numbered(0x66);

    // Three made-up devices claimed at once: two are registered, one is not.
    let made_up: Vec<(Value, String)> = (0..3)
        .map(|i| request(dir.path(), &format!("fake{i}"), &mallory))
        .collect();
    let answers =
        futures_util::future::join_all(made_up.iter().map(|(r, s)| claim(&server, r, s, None))).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    let refused: Vec<usize> = (0..answers.len()).filter(|&i| statuses[i] != 201).collect();
    assert_eq!(refused.len(), 1, "statuses {statuses:?}");
    let (status, answer) = &answers[refused[0]];
    assert_eq!(
        (*status, answer["reason"].as_str()),
        (429, Some("new_device_limit")),
        "{answer}"
    );
    // The refused one was not registered: not a device, no owner.
    let loser = id(&made_up[refused[0]].0);
    let (s, _) = admin_get(&format!("{}/v1/devices/{loser}", server.url)).await;
    assert_eq!(s, 404, "a refused claim registers nothing");

    // A restart does not give the hour back.
    drop(server);
    let server = store.start(&data, &["--config", &cfg]);
    let (r, s) = request(dir.path(), "fake3", &mallory);
    let (status, answer) = claim(&server, &r, &s, None).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (429, Some("new_device_limit")),
        "{answer}"
    );

    // Not counted: a device the operator registered, claimed by its owner;
    // a new device claimed with the admin token.
    let alice = Wallet::numbered(0x11);
    let (key, r) = bind(dir.path(), "real", &alice.address, 1337);
    register_with_owner(&server, &wattstream_sdk::load_key(&key).unwrap(), None).await;
    let s = alice.sign(r["owner_message"].as_str().unwrap());
    let (status, answer) = claim(&server, &r, &s, None).await;
    assert_eq!(status, 201, "{answer}");
    let (r, s) = request(dir.path(), "installed", &alice);
    let (status, answer) = claim(&server, &r, &s, Some(TOKEN)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(owner_of(&server, id(&r)).await, Some(alice.lower()));
}
