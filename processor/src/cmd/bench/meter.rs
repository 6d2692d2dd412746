//! The meter part of `wattstream bench`: RSS and CPU of the real
//! `power-meter run --sim` (10 Hz sampling, 5 s windows) sending to the
//! benchmark's processor. `--meter-bin` and `--meter-runner` measure another
//! build of it, such as an ARM package's binary under qemu-user (whose RSS
//! and CPU are then the emulator's: its translator and code cache included).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use wattstream_sdk::client::ProcessorClient;

use super::procfs;

/// Peak RSS (MB) and CPU (% of a core) of the meter over `seconds`.
pub fn footprint(
    url: &str,
    admin: &ProcessorClient,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    seconds: u64,
    launch: &Launch,
) -> Result<(f64, f64)> {
    let exe = match &launch.bin {
        Some(bin) => bin.clone(),
        None => std::env::current_exe()?.with_file_name("power-meter"),
    };
    anyhow::ensure!(exe.exists(), "{} is not built", exe.display());
    let command = || {
        let mut words = launch.runner.split_whitespace();
        match words.next() {
            Some(emulator) => {
                let mut c = Command::new(emulator);
                c.args(words).arg(&exe);
                c
            }
            None => Command::new(&exe),
        }
    };
    let key = dir.join("meter/device.pem");
    let out = command().args(["keygen", "--key"]).arg(&key).output()?;
    anyhow::ensure!(
        out.status.success(),
        "keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pk = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("public_key: ").map(str::to_string))
        .unwrap_or_default();
    rt.block_on(admin.register_device(&pk, Some("bench")))?;
    let mut child = command()
        .args(["run", "--sim", "--sample-ms", "100", "--window", "5"])
        .args(["--processor", url, "--key"])
        .arg(&key)
        .arg("--data-dir")
        .arg(dir.join("meter"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Let it start; measure the steady state from here.
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id();
    let (cpu0, start) = (procfs::usage(pid).cpu_s, Instant::now());
    let mut max_rss = 0u64;
    for _ in 0..seconds {
        std::thread::sleep(Duration::from_secs(1));
        max_rss = max_rss.max(procfs::usage(pid).rss_kib);
    }
    let cpu = (procfs::usage(pid).cpu_s - cpu0) / start.elapsed().as_secs_f64() * 100.0;
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    Ok((max_rss as f64 / 1024.0, cpu))
}

/// Which meter binary the footprint measures, and through what.
#[derive(Default)]
pub struct Launch {
    /// The binary (default: `power-meter` beside this one).
    pub bin: Option<std::path::PathBuf>,
    /// A command to run it through, such as `qemu-aarch64 -L /usr/aarch64-linux-gnu`.
    pub runner: String,
}
