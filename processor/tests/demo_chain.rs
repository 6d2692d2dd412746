//! `wattstream demo --chain`, as a newcomer runs it: three simulated meters on
//! a processor, their epochs settled on a local ganache and claimed for each
//! meter's EVM owner, each owner's token balance on chain equal to the totals
//! the settled seals prove. Needs the workspace's binaries (`power-meter`,
//! `power-meter-display`) and `rewards/contracts/node_modules` (scripts/test.sh).

mod common;

use std::path::Path;

#[test]
fn the_demo_settles_its_epochs_on_a_local_chain_and_each_owner_holds_its_proven_totals() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = common::cli(&[
        "demo",
        "--chain",
        "--duration",
        "35",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--applets",
        root.join("applets/dist").to_str().unwrap(),
        "--ganache",
        root.join("rewards/contracts/node_modules/.bin/ganache")
            .to_str()
            .unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owners: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" WATT on chain from "))
        .collect();
    assert_eq!(owners.len(), 3, "{text}");
    assert!(owners.iter().all(|l| l.ends_with("(equal)")), "{text}");
    // The frugal meter (2.2 W, the top tier) earned in every settled epoch.
    assert!(text.contains("frugal: claimed epoch"), "{text}");
    assert!(!owners[0].contains(" 0.000000 WATT"), "{text}");
    assert!(text.contains("rewards verify: ok"), "{text}");
    // The processor reads the settlements back from the distributor (the
    // dashboard's epochs page): every epoch settled above, none different.
    let line = text
        .lines()
        .find(|l| l.starts_with("epochs page: "))
        .unwrap_or_else(|| panic!("{text}"));
    let settled: usize = line["epochs page: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        settled >= 1 && line.contains(", 0 root differs,") && line.ends_with("(chain 1337)"),
        "{line}"
    );
}
