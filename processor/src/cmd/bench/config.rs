//! The processor config a benchmark runs on (`bench --config`): the user's
//! tuning, made safe for a scratch processor, and the soak's epoch on top.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Sections that would connect the benchmark's scratch processor to the
/// world: a broker's meters, a chain and its key, HTTPS, owner bindings.
const NOT_FOR_A_BENCH: &[&str] = &["tls", "mqtt", "chains", "onboarding"];

/// `--config` for the benchmark's processors, written to `dir`: checked as
/// `serve` checks it (a wrong key fails now, named); refused where it would
/// reach outside the benchmark ([`NOT_FOR_A_BENCH`], and `store.url`: a
/// benchmark fills its store, so `--store` names an empty database); and
/// without `admin_token` (the benchmark's own wins, and neither this copy nor
/// `--json` holds a secret).
pub(super) fn bench_config(given: &Path, dir: &Path) -> Result<(PathBuf, toml::Table)> {
    let what = || format!("--config {}", given.display());
    let text = std::fs::read_to_string(given).with_context(what)?;
    wattstream_processor::config::Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", what()))?;
    let mut settings: toml::Table = toml::from_str(&text).with_context(what)?;
    if let Some(key) = NOT_FOR_A_BENCH.iter().find(|k| settings.contains_key(**k)) {
        anyhow::bail!(
            "{}: [{key}] would reach outside the benchmark's own processor: leave it out",
            what()
        );
    }
    if settings.get("store").and_then(|s| s.get("url")).is_some() {
        anyhow::bail!(
            "{}: store.url: a benchmark fills its store; name an empty database with --store",
            what()
        );
    }
    settings.remove("admin_token");
    let copy = dir.join("processor.toml");
    std::fs::write(&copy, toml::to_string(&settings)?)?;
    Ok((copy, settings))
}

/// The soak's processor config: `--config`'s settings (from
/// [`bench_config`]), with an epoch sealed every minute.
pub(super) fn soak_config(given: Option<&toml::Table>) -> Result<String> {
    let mut config = given.cloned().unwrap_or_default();
    let rewards = config
        .entry("rewards")
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .context("--config: `rewards` must be a table")?;
    rewards.insert("epoch_s".into(), 60.into());
    rewards.insert("seal_after_s".into(), 5.into());
    Ok(toml::to_string(&config)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soak_keeps_the_given_config_and_seals_every_minute() {
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().join("given.toml");
        std::fs::write(
            &given,
            "[store]\nwal_restart_mib = 64\n[rewards]\nepoch_s = 3600\npage_lock_ms = 3\n",
        )
        .unwrap();
        let (_, settings) = super::bench_config(&given, dir.path()).unwrap();
        let soak = super::soak_config(Some(&settings)).unwrap();
        let c = wattstream_processor::config::Config::parse(&soak).unwrap();
        assert_eq!((c.rewards.epoch_s, c.rewards.seal_after_s), (60, 5), "{soak}");
        assert_eq!(
            (c.store.wal_restart_mib, c.rewards.page_lock_ms),
            (64, 3),
            "{soak}"
        );
        let alone = wattstream_processor::config::Config::parse(&super::soak_config(None).unwrap()).unwrap();
        assert_eq!((alone.rewards.epoch_s, alone.rewards.seal_after_s), (60, 5));
    }
}
