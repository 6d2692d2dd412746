//! Rewards settle on an EVM chain (ganache from npm, the contracts compiled
//! with solc from npm): the operator deploys the token and the distributor,
//! `rewards settle` publishes sealed roots and device owners, and each owner's
//! claim with the proof the meter verifies mints exactly the proven epoch
//! total to the owner's EVM address, once. The contract refuses a wrong
//! proof, a second claim, an unsettled epoch and a device with no EVM owner.

mod common;

use std::path::Path;
use std::time::Duration;

use alloy::primitives::Address;
use common::ganache::Ganache;
use common::*;
use reqwest::Method;
use serde_json::{Value, json};
use wattstream_processor::chain::claim::ClaimCall;
use wattstream_processor::chain::contracts::{EpochDistributor, WattToken};
use wattstream_sdk::{DeviceKey, Reading};

/// Readings two and three hours old seal at once (the paid-time rule pays
/// readings from before registration within the allowed skew: four hours here).
const CONFIG: &str = "[rewards]\nepoch_s = 3600\nseal_after_s = 0\ncap_per_epoch = 1000\n\
                      [limits]\nmax_future_s = 14400\n";

fn ok(out: std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn chain_args<'a>(chain: &'a Ganache, distributor: &'a str) -> Vec<&'a str> {
    vec![
        "--rpc",
        &chain.rpc,
        "--chain-key",
        chain.key_file.to_str().unwrap(),
        "--distributor",
        distributor,
    ]
}

async fn proof(server: &Server, epoch: u64, id: &str) -> Value {
    let (s, v) = get(&format!("{}/v1/epochs/{epoch}/proofs/{id}", server.url)).await;
    assert_eq!(s, 200, "{v}");
    v
}

fn claim_cli(
    server: &Server,
    chain: &Ganache,
    distributor: &str,
    id: &str,
    epoch: u64,
    pk: &str,
) -> std::process::Output {
    let epoch = epoch.to_string();
    let mut args = vec![
        "rewards",
        "claim",
        "--server",
        &server.url,
        "--device",
        id,
        "--epoch",
        &epoch,
    ];
    args.extend(["--public-key", pk]);
    args.extend(chain_args(chain, distributor));
    cli(&args)
}

fn config(dir: &Path) -> String {
    let path = dir.join("wattstream.toml");
    std::fs::write(&path, CONFIG).unwrap();
    path.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_epochs_settle_on_chain_and_each_owner_claims_its_proven_total_once() {
    let dir = tempfile::tempdir().unwrap();
    let chain = Ganache::start(dir.path());
    let book_path = dir.path().join("book.json");
    let deployed = ok(cli(&[
        "chain",
        "deploy",
        "--rpc",
        &chain.rpc,
        "--chain-key",
        chain.key_file.to_str().unwrap(),
        "--out",
        book_path.to_str().unwrap(),
    ]));
    let book: Value = serde_json::from_str(&std::fs::read_to_string(&book_path).unwrap()).unwrap();
    assert_eq!(book["chain_id"], 1337, "{deployed}");
    let distributor = book["distributor"].as_str().unwrap().to_string();
    let token: Address = book["token"].as_str().unwrap().parse().unwrap();

    let data = dir.path().join("processor");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = config(&data);
    // The processor reads each seal's settlement from the distributor (the
    // dashboard's epochs page).
    let served = data.join("served.toml");
    std::fs::write(
        &served,
        format!(
            "{CONFIG}[chains.1337]\nrpc = \"{}\"\nkey_file = \"{}\"\n\
             [dashboard]\nsettlement_chain = 1337\ndistributor = \"{distributor}\"\n",
            chain.rpc,
            chain.key_file.display()
        ),
    )
    .unwrap();
    let server = Server::start_with(
        &data,
        &["--admin-token", TOKEN, "--config", served.to_str().unwrap()],
    );
    let wasm = std::fs::read(dist("rewards-tiered")).unwrap();
    deploy_ok(&server, "default", "rewards-tiered", wasm).await;
    // Two devices with EVM owners, one whose owner is not an EVM address.
    let keys: Vec<DeviceKey> = (0..3).map(|_| DeviceKey::generate()).collect();
    let owners: Vec<String> = (0..2)
        .map(|_| DeviceKey::generate().device_id().address())
        .collect();
    for (i, k) in keys.iter().enumerate() {
        let owner = owners.get(i).cloned().unwrap_or_else(|| "alice".into());
        let (s, v) = admin(
            Method::POST,
            &format!("{}/v1/devices", server.url),
            TOKEN,
            Some(json!({"public_key": k.public_key().to_hex(), "owner": owner})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    // Two epochs, each sealed before the next one's readings: a device's
    // second leaf has an epoch total below its cumulative balance.
    let first = wattstream_sdk::time::unix_now() / 3600 - 3;
    let epochs = [first, first + 1];
    for (n, epoch) in epochs.iter().enumerate() {
        for (i, k) in keys.iter().enumerate() {
            let windows: Vec<String> = (0..6u64)
                .map(|w| {
                    let mut r = Reading::new(1.0 + i as f64 * 1.5, epoch * 3600 + 10 + w * 5)
                        .with_seq(n as u64 * 6 + w + 1);
                    r.window_s = Some(5);
                    k.sign_reading(&r)
                })
                .collect();
            let (s, v) = post(
                &format!("{}/v1/events", server.url),
                format!("[{}]", windows.join(",")),
            )
            .await;
            assert_eq!(s, 200, "{v}");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let head = get(&format!("{}/v1/ledger/head", server.url)).await.1;
            if head["seq"] == 18 * (n + 1) && head["last_sealed_epoch"] == *epoch {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "epoch {epoch} not sealed: {head}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let pk = get(&format!("{}/v1/ledger/head", server.url)).await.1["processor_public_key"]
        .as_str()
        .unwrap()
        .to_string();

    let settlements = async || {
        let (s, v) = get(&format!("{}/v1/epochs", server.url)).await;
        assert_eq!((s, v["settlement_chain"].as_u64()), (200, Some(1337)), "{v}");
        let mut by_epoch: Vec<(u64, String)> = v["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["epoch"].as_u64().unwrap(),
                    e["settlement"]["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        by_epoch.sort();
        by_epoch
    };
    assert_eq!(
        settlements().await,
        epochs
            .iter()
            .map(|e| (*e, "not_settled".to_string()))
            .collect::<Vec<_>>()
    );

    // Settle: owners and the root go on chain; a second run sends nothing.
    let mut settle = vec![
        "rewards",
        "settle",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        &cfg,
    ];
    settle.extend(chain_args(&chain, &distributor));
    let out = ok(cli(&settle));
    for epoch in epochs {
        assert!(out.contains(&format!("settled epoch {epoch} (tx 0x")), "{out}");
    }
    assert!(out.contains("2 roots and 2 owner changes sent"), "{out}");
    let again = ok(cli(&settle));
    assert!(again.contains("0 roots and 0 owner changes sent"), "{again}");
    assert_eq!(
        settlements().await,
        epochs
            .iter()
            .map(|e| (*e, "settled".to_string()))
            .collect::<Vec<_>>(),
        "the epochs page reads each settled root from the distributor"
    );

    let provider = wattstream_processor::chain::reader(&chain.rpc).unwrap();
    let erc20 = WattToken::new(token, &provider);
    let d = EpochDistributor::new(distributor.parse().unwrap(), &provider);
    for (k, owner) in keys.iter().zip(&owners) {
        let id = k.device_id().to_string();
        let owner: Address = owner.parse().unwrap();
        let mut paid = 0u128;
        for epoch in epochs {
            let total: u128 = proof(&server, epoch, &id).await["proof"]["epoch_total"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(total > 0);
            let claimed = ok(claim_cli(&server, &chain, &distributor, &id, epoch, &pk));
            assert!(claimed.contains(&format!("claimed epoch {epoch}")), "{claimed}");
            paid += total;
            let balance = erc20.balanceOf(owner).call().await.unwrap();
            assert_eq!(
                balance,
                alloy::primitives::U256::from(paid),
                "{id} after epoch {epoch}"
            );
            // Claimed again: nothing is sent, nothing more is paid.
            let again = ok(claim_cli(&server, &chain, &distributor, &id, epoch, &pk));
            assert!(again.contains("claimed before"), "{again}");
            assert_eq!(erc20.balanceOf(owner).call().await.unwrap(), balance);
        }
        // The owner holds on chain exactly what the ledger credited the device.
        let (_, r) = get(&format!("{}/v1/devices/{id}/rewards", server.url)).await;
        assert_eq!(r["balance_units"], paid.to_string(), "{r}");
    }
    let device: Address = keys[0].device_id().address().parse().unwrap();
    let device_key_hash_balance = erc20.balanceOf(device).call().await.unwrap();
    assert!(
        device_key_hash_balance.is_zero(),
        "nothing is paid to a device's key hash"
    );

    // What the contract refuses, sent straight to it (an attacker need not use our CLI).
    let epoch = epochs[1];
    // The error a claim reverts with, by name.
    let reverts = async |epoch: u64, c: ClaimCall| {
        d.claim(epoch, c.device, c.epoch_total, c.balance, c.siblings, c.lefts)
            .call()
            .await
            .expect_err("the claim must revert")
            .as_decoded_interface_error::<EpochDistributor::EpochDistributorErrors>()
            .map(|e| format!("{e:?}"))
            .unwrap_or_default()
    };
    let call_for = async |k: &DeviceKey| {
        let v = proof(&server, epoch, &k.device_id().to_string()).await;
        let p: wattstream_sdk::proof::ProofView = serde_json::from_value(v["proof"].clone()).unwrap();
        ClaimCall::of(&p).unwrap()
    };
    // The second device was claimed above: a second claim reverts, as does an unsettled epoch.
    let second = call_for(&keys[1]).await;
    assert!(reverts(epoch, second.clone()).await.contains("AlreadyClaimed"));
    assert!(reverts(epoch + 5, second).await.contains("NotSettled"));
    // The third device (no EVM owner): a forged total fails the proof; a right proof pays nobody.
    let third = call_for(&keys[2]).await;
    let forged = ClaimCall {
        epoch_total: third.epoch_total + 1,
        ..third.clone()
    };
    assert!(reverts(epoch, forged).await.contains("BadProof"));
    assert!(reverts(epoch, third).await.contains("NoOwner"));
    let out = claim_cli(
        &server,
        &chain,
        &distributor,
        &keys[2].device_id().to_string(),
        epoch,
        &pk,
    );
    assert!(!out.status.success(), "the CLI reports the refusal");
}
