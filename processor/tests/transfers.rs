//! Transfers and unbindings against a real processor, on both stores: the
//! current owner's (or the admin's) and the new owner's signatures, owners by
//! epoch, and the record chain re-verified offline.

mod common;

use std::path::Path;

use common::onboard::*;
use common::wallet::Wallet;
use common::*;
use serde_json::{Value, json};

on_both_engines!(transfers_need_the_current_owner_and_the_new_one_and_the_chain_verifies_offline);

async fn transfers_need_the_current_owner_and_the_new_one_and_the_chain_verifies_offline(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let store = TestStore::new(engine).await;
    let cfg = config(
        dir.path(),
        "[onboarding]\npolicy = \"open\"\n[rewards]\nepoch_s = 3600\n",
    );
    let server = store.start(&dir.path().join("data"), &["--config", &cfg]);
    let (alice, bob, carol) = (
        Wallet::numbered(0x11),
        Wallet::numbered(0x22),
        Wallet::numbered(0x33),
    );

    // Two owners race to claim one device: exactly one wins.
    let (key, to_alice) = bind(dir.path(), "m", &alice.address, 1337);
    let to_bob = bind_with(&key, &bob.address, 1337);
    let (sa, sb) = (
        alice.sign(to_alice["owner_message"].as_str().unwrap()),
        bob.sign(to_bob["owner_message"].as_str().unwrap()),
    );
    let ((s1, a1), (s2, a2)) = tokio::join!(
        claim(&server, &to_alice, &sa, None),
        claim(&server, &to_bob, &sb, None)
    );
    let mut statuses = [s1, s2];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{a1} {a2}");
    let id = to_alice["device_id"].as_str().unwrap().to_string();
    let first = owner_of(&server, &id).await.unwrap();
    let (owner, other) = if first == alice.lower() {
        (&alice, &bob)
    } else {
        (&bob, &alice)
    };

    // owner → carol: refused without the owner, without carol, and when
    // signed by someone else; then done with both signatures.
    let t = transfer_request(&id, &owner.address, Some(&carol.address));
    let msg = t["owner_message"].as_str().unwrap().to_string();
    let (s, a) = transfer(&server, &t, None, Some(&carol.sign(&msg)), None).await;
    assert_eq!(
        (s, a["reason"].as_str()),
        (401, Some("from_signature_required")),
        "{a}"
    );
    let (s, a) = transfer(&server, &t, Some(&owner.sign(&msg)), None, None).await;
    assert_eq!(
        (s, a["reason"].as_str()),
        (400, Some("owner_signature_required")),
        "{a}"
    );
    let (s, a) = transfer(
        &server,
        &t,
        Some(&other.sign(&msg)),
        Some(&carol.sign(&msg)),
        None,
    )
    .await;
    assert_eq!(
        (s, a["reason"].as_str()),
        (400, Some("owner_signature_mismatch")),
        "{a}"
    );
    // `other` signs a transfer from itself: well signed, but not the owner.
    let t_other = transfer_request(&id, &other.address, Some(&carol.address));
    let m_other = t_other["owner_message"].as_str().unwrap();
    let (s, a) = transfer(
        &server,
        &t_other,
        Some(&other.sign(m_other)),
        Some(&carol.sign(m_other)),
        None,
    )
    .await;
    assert_eq!((s, a["reason"].as_str()), (409, Some("not_current_owner")), "{a}");
    assert_eq!(owner_of(&server, &id).await, Some(owner.lower()));
    let (s, a) = transfer(
        &server,
        &t,
        Some(&owner.sign(&msg)),
        Some(&carol.sign(&msg)),
        None,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(owner_of(&server, &id).await, Some(carol.lower()));
    // The claim took effect in the epoch it was made, the transfer from the
    // next: what the device earned in this epoch stays with the first owner.
    assert_eq!(a["effective_epoch"], a["at"].as_u64().unwrap() / 3600 + 1, "{a}");

    // carol → other by the admin (carol lost her wallet), with other's consent.
    let t2 = transfer_request(&id, &carol.address, Some(&other.address));
    let m2 = t2["owner_message"].as_str().unwrap();
    let (s, a) = transfer(&server, &t2, None, Some(&other.sign(m2)), Some(TOKEN)).await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["authorized_by"], "admin");
    // other unbinds it.
    let t3 = transfer_request(&id, &other.address, None);
    let (s, a) = transfer(
        &server,
        &t3,
        Some(&other.sign(t3["owner_message"].as_str().unwrap())),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(owner_of(&server, &id).await, None);
    // Claimed again by carol: a device that had an owner changes hands from
    // the next epoch, like a transfer.
    let reclaim = bind_with(&key, &carol.address, 1337);
    let (s, a) = claim(
        &server,
        &reclaim,
        &carol.sign(reclaim["owner_message"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["effective_epoch"], a["at"].as_u64().unwrap() / 3600 + 1, "{a}");

    // The chain, saved and verified offline.
    let served = bindings(&server, &id).await;
    let kinds: Vec<&str> = served["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["claim", "transfer", "transfer", "unbind", "claim"]);
    let file = dir.path().join("bindings.json");
    std::fs::write(&file, served.to_string()).unwrap();
    let verify = |path: &Path, epoch: u64| {
        cli(&[
            "device",
            "verify-bindings",
            "--file",
            path.to_str().unwrap(),
            "--epoch",
            &epoch.to_string(),
        ])
    };
    let claim_epoch = served["records"][0]["effective_epoch"].as_u64().unwrap();
    assert_eq!(claim_epoch, served["records"][0]["at"].as_u64().unwrap() / 3600);
    let out = verify(&file, claim_epoch);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["owner_in_epoch"]["owner"], owner.lower(), "{report}");
    assert_eq!(report["admin_authorised"], json!([2]));
    let spans = report["owners"].as_array().unwrap();
    assert_eq!(spans[1]["from_epoch"].as_u64().unwrap(), claim_epoch + 1);

    // Tampering with any record breaks the check: a new owner written in…
    let mut forged = served.clone();
    forged["records"][1]["owner"] = json!(bob.lower());
    std::fs::write(&file, forged.to_string()).unwrap();
    let out = verify(&file, claim_epoch);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // …or an admin step dropped from the middle.
    let mut cut = served.clone();
    cut["records"].as_array_mut().unwrap().remove(2);
    // …or a transfer moved an epoch earlier (only the hash covers that),
    // or the admin's step passed off as the owner's.
    let mut backdated = served.clone();
    backdated["records"][1]["effective_epoch"] = json!(claim_epoch);
    let mut disowned = served.clone();
    disowned["records"][2]["authorized_by"] = json!("owner");
    for (name, tampered) in [("cut", cut), ("backdated", backdated), ("disowned", disowned)] {
        std::fs::write(&file, tampered.to_string()).unwrap();
        let out = verify(&file, claim_epoch);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
