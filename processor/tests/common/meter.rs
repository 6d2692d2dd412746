//! A real `power-meter run --sim` for end-to-end tests: 1 s windows, 50 ms
//! samples, no clock wait. The binary is built by `cargo test --workspace`
//! (scripts/test.sh) next to `wattstream`; [`Launcher::emulated`] runs
//! another architecture's build of it under qemu-user instead.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub fn bin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_wattstream")).with_file_name("power-meter");
    assert!(
        p.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// How a meter binary is started: directly, or through an emulator.
#[derive(Clone)]
pub struct Launcher(Vec<OsString>);

impl Launcher {
    /// The workspace's own build.
    pub fn host() -> Launcher {
        Launcher(vec![bin().into()])
    }

    /// `qemu sysroot binary`: an ARM build under qemu-user, its C library
    /// taken from `sysroot` (`/usr/aarch64-linux-gnu`, say).
    pub fn emulated(qemu: &str, sysroot: &Path, binary: &Path) -> Launcher {
        Launcher(vec![qemu.into(), "-L".into(), sysroot.into(), binary.into()])
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.0[0]);
        c.args(&self.0[1..]);
        c
    }
}

pub struct Meter {
    pub child: Child,
    pub dir: PathBuf,
    pub device_id: String,
    pub public_key: String,
}

impl Meter {
    /// Makes a key in `dir` and writes `dir/meter.toml` with `extra` TOML
    /// lines (top-level keys) appended; does not start.
    pub fn provision(dir: &Path, processor: &str, extra: &str) -> (PathBuf, String, String) {
        Self::provision_with(&Launcher::host(), dir, processor, extra)
    }

    /// [`Meter::provision`] with the key made by `launcher`'s binary.
    pub fn provision_with(
        launcher: &Launcher,
        dir: &Path,
        processor: &str,
        extra: &str,
    ) -> (PathBuf, String, String) {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("device.pem");
        let out = launcher
            .command()
            .args(["keygen", "--key"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap()
                .trim()
                .to_string()
        };
        let config = dir.join("meter.toml");
        std::fs::write(
            &config,
            format!(
                "processor = \"{processor}\"\nkey = \"{key}\"\ndata_dir = \"{data}\"\nwindow_s = 1\nsample_ms = 50\n\
                 clock_sync_command = []\n{extra}\n\
                 [sim]\nprofile = \"constant\"\nwatts = 6.0\n\
                 [uplink]\nbatch = 20\ntimeout_s = 3\nbackoff_min_ms = 100\nbackoff_max_s = 1\nrewards_poll_s = 3600\n",
                key = key.display(),
                data = dir.join("data").display()
            ),
        )
        .unwrap();
        (config, field("device_id:"), field("public_key:"))
    }

    pub fn start(dir: &Path, config: &Path, device_id: String, public_key: String) -> Meter {
        Self::start_with(&Launcher::host(), dir, config, device_id, public_key)
    }

    pub fn start_with(
        launcher: &Launcher,
        dir: &Path,
        config: &Path,
        device_id: String,
        public_key: String,
    ) -> Meter {
        let child = launcher
            .command()
            .args(["run", "--sim", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Meter {
            child,
            dir: dir.to_path_buf(),
            device_id,
            public_key,
        }
    }

    /// The meter's state file (None until it is first written).
    pub fn state(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.join("data/state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// SIGTERM: the meter stops sampling, flushes what it can and exits.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
