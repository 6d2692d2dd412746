//! `wattstream demo --chain`: the demo's rewards settled on a local EVM chain.
//! It starts ganache (npm, `rewards/contracts/node_modules`), deploys the token
//! and the distributor with a fresh key, gives each meter an EVM owner, and at
//! the end settles the sealed epochs, claims every meter's totals with the
//! proofs the processor serves, and prints each owner's token balance on
//! chain beside the balance the newest seal proves.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::DynProvider;
use anyhow::{Context, Result, bail};
use wattstream_processor::chain::contracts::WattToken;
use wattstream_processor::chain::{AddressBook, claim, deploy, load_key, provider, settle};
use wattstream_sdk::client::ProcessorClient;

/// A running local chain with the contracts deployed.
pub struct DemoChain {
    ganache: Child,
    pub rpc: String,
    provider: DynProvider,
    pub book: AddressBook,
}

fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    Ok(hex::encode(b))
}

/// A fresh EVM address for a meter's owner (nobody holds its key: anyone may
/// submit a claim, and the tokens go to the owner).
pub fn owner() -> Result<String> {
    Ok(format!("0x{}", random_hex(20)?))
}

impl DemoChain {
    /// Starts ganache (`ganache`: its executable) and deploys the contracts.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        ganache: &Path,
        dir: &Path,
        epoch_s: u64,
    ) -> Result<DemoChain> {
        if !ganache.exists() {
            bail!(
                "{} is missing: run `npm ci` in rewards/contracts (scripts/demo.sh does)",
                ganache.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let key_file: PathBuf = dir.join("chain.key");
        let key = format!("0x{}", random_hex(32)?);
        std::fs::write(&key_file, format!("{key}\n"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
        }
        let log = std::fs::File::create(dir.join("ganache.log"))?;
        let child = Command::new(ganache)
            .args(["--server.host", "127.0.0.1", "--server.port", &port.to_string()])
            .args(["--chain.chainId", "1337", "--wallet.accounts"])
            .arg(format!("{key},1000000000000000000000"))
            .arg("--logging.quiet")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", ganache.display()))?;
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("ganache did not listen on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let rpc = format!("http://127.0.0.1:{port}");
        let signer = load_key(&key_file)?;
        let me = signer.address();
        let provider = provider(&rpc, signer)?;
        let book = runtime.block_on(deploy(&provider, me, "WattStream", "WATT", epoch_s))?;
        Ok(DemoChain {
            ganache: child,
            rpc,
            provider,
            book,
        })
    }

    /// Settles what `data_dir`'s store sealed, claims every meter's epochs,
    /// and returns the summary: `(name, device id, owner)` per meter.
    pub fn settle_and_claim(
        &self,
        runtime: &tokio::runtime::Runtime,
        client: &ProcessorClient,
        store: &Path,
        meters: &[(String, String, String)],
        pinned: &str,
    ) -> Result<String> {
        let c = rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let plan = settle::plan(&c)?;
        let pinned = wattstream_sdk::PublicKey::from_hex(pinned)?;
        runtime.block_on(async {
            let sent = settle::settle(&self.provider, self.book.distributor, &plan).await?;
            let mut out = format!(
                "On chain (ganache at {}, token {}, distributor {}): {} epochs settled\n",
                self.rpc,
                self.book.token,
                self.book.distributor,
                sent.roots.len()
            );
            for (epoch, tx) in &sent.roots {
                out.push_str(&format!("  settled epoch {epoch}: tx {tx}\n"));
            }
            let token = WattToken::new(self.book.token, &self.provider);
            for (name, id, owner) in meters {
                // The epoch totals the seals prove, summed: what the claims pay. (The
                // balance a seal proves also counts credits of the epoch still open
                // when it was made, which a later seal settles.)
                let (mut claims, mut proven) = (0, 0u128);
                for (epoch, _) in &plan.roots {
                    let Ok(v) = client.get_json(&format!("/v1/epochs/{epoch}/proofs/{id}")).await else {
                        continue; // no leaf for this meter in that epoch
                    };
                    let seal = serde_json::from_value(v["seal"].clone())?;
                    let proof: wattstream_sdk::proof::ProofView = serde_json::from_value(v["proof"].clone())?;
                    proven += proof.epoch_total.parse::<u128>()?;
                    if let claim::Claimed::Sent(tx) =
                        claim::claim(&self.provider, self.book.distributor, &seal, &proof, &pinned).await?
                    {
                        out.push_str(&format!("  {name}: claimed epoch {epoch}: tx {tx}\n"));
                    }
                    claims += 1;
                }
                let owner: Address = owner.parse()?;
                let held = token.balanceOf(owner).call().await?;
                out.push_str(&format!(
                    "  {name:<10} owner {owner}: {:>12.6} WATT on chain from {claims} claims; the settled epochs prove {:.6}{}\n",
                    units(held),
                    proven as f64 / 1e18,
                    if held == U256::from(proven) { " (equal)" } else { " (DIFFERENT)" }
                ));
            }
            Ok(out)
        })
    }
}

fn units(v: U256) -> f64 {
    u128::try_from(v).map_or(f64::INFINITY, |u| u as f64 / 1e18)
}

impl Drop for DemoChain {
    fn drop(&mut self) {
        let _ = self.ganache.kill();
        let _ = self.ganache.wait();
    }
}
