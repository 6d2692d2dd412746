//! A real install on this machine: as root, with a real `wattstream` user,
//! `install.sh` for a meter and a processor, each binary started as that user
//! with its installed configuration (`setpriv`), then everything removed.
//! It changes the machine, so it runs only where `WATTSTREAM_REAL_INSTALL=1`
//! (`.ci/run` sets it), as root, and where nothing is installed yet; elsewhere
//! it says why it was skipped.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_power-meter"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn sh(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn install(args: &[&str]) -> String {
    let (ok, out) = sh(Command::new("bash")
        .arg(repo().join("install.sh"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(args));
    assert!(ok, "install.sh {args:?}: {out}");
    out
}

fn exists(what: &str, args: &[&str]) -> bool {
    Command::new(what)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `cmd` as the service user: `setpriv` execs it in place, so the child we
/// hold (and kill) is the service itself.
fn as_service_user(cmd: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=wattstream",
        "--regid=wattstream",
        "--init-groups",
        "--",
        cmd,
    ]);
    c
}

/// Waits (bounded) until `path` exists; the child is killed either way.
fn appears(mut child: Child, path: &Path) -> bool {
    let start = Instant::now();
    let found = loop {
        if path.exists() {
            break true;
        }
        if start.elapsed() > Duration::from_secs(30) || child.try_wait().unwrap().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    found
}

fn skip(why: &str) {
    eprintln!("real install test skipped: {why}");
}

#[test]
fn a_real_install_starts_each_binary_as_the_service_user() {
    if std::env::var("WATTSTREAM_REAL_INSTALL").as_deref() != Ok("1") {
        return skip("set WATTSTREAM_REAL_INSTALL=1 to let it change this machine (.ci/run does)");
    }
    if !exists("id", &["-u"])
        || String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout).trim() != "0"
    {
        return skip("not root");
    }
    for p in [
        "/etc/wattstream",
        "/var/lib/wattstream",
        "/usr/local/bin/power-meter",
        "/usr/local/bin/wattstream",
    ] {
        if Path::new(p).exists() {
            return skip(&format!("{p} exists: this machine has an install of its own"));
        }
    }
    let user_existed = exists("id", &["wattstream"]);
    let groups_existed: Vec<bool> = ["i2c", "spi", "gpio"]
        .iter()
        .map(|g| exists("getent", &["group", g]))
        .collect();

    install(&[]);
    let out = install(&["--processor"]);
    if !Path::new("/run/systemd/system").exists() {
        assert!(
            out.contains("could not start"),
            "says the services were not started: {out}"
        );
    }
    // Configs: root-owned, readable by the service group, not by others.
    let gid = |name: &str| {
        let out = Command::new("getent").args(["group", name]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .nth(2)
            .unwrap()
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    for f in ["meter.toml", "display.toml", "wattstream.toml"] {
        let m = std::fs::metadata(Path::new("/etc/wattstream").join(f)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o777),
            (0, gid("wattstream"), 0o640),
            "{f}"
        );
    }
    let env = std::fs::metadata("/etc/wattstream/wattstream.env").unwrap();
    assert_eq!(
        env.permissions().mode() & 0o777,
        0o600,
        "the admin token stays root-only"
    );

    // Each binary, as the service user, with its installed config.
    let meter = as_service_user("/usr/local/bin/power-meter")
        .args(["run", "--sim", "--config", "/etc/wattstream/meter.toml"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        appears(meter, Path::new("/var/lib/wattstream/state.json")),
        "the meter started and wrote its state file"
    );
    let display = as_service_user("/usr/local/bin/power-meter-display")
        .args(["run", "--config", "/etc/wattstream/display.toml"])
        .args(["--png-dir", "/var/lib/wattstream/frames"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        appears(display, Path::new("/var/lib/wattstream/frames/frame.png")),
        "the screen started and drew a frame"
    );
    let token = std::fs::read_to_string("/etc/wattstream/wattstream.env").unwrap();
    let token = token.trim().strip_prefix("WATTSTREAM_ADMIN_TOKEN=").unwrap();
    let mut processor = as_service_user("/usr/local/bin/wattstream")
        .args([
            "serve",
            "--config",
            "/etc/wattstream/wattstream.toml",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("WATTSTREAM_ADMIN_TOKEN", token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(processor.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = processor.kill();
    let _ = processor.wait();
    assert!(
        line.starts_with("listening on"),
        "the processor started: {line:?}"
    );
    assert!(
        Path::new("/var/lib/wattstream/wattstream.db").exists(),
        "its store is in the data directory"
    );

    install(&["--uninstall", "--processor"]);
    install(&["--uninstall", "--purge", "--yes"]);
    assert!(!Path::new("/etc/wattstream").exists() && !Path::new("/usr/local/bin/power-meter").exists());
    if !user_existed {
        let _ = Command::new("userdel").arg("wattstream").status();
    }
    for (g, existed) in ["i2c", "spi", "gpio"].iter().zip(groups_existed) {
        if !existed {
            let _ = Command::new("groupdel").arg(g).status();
        }
    }
}
