//! The meter's Debian packages (`scripts/package.sh`) as a user gets them:
//! - each ARM package holds both binaries built for its architecture, units
//!   that start them from where the package puts them, and the default
//!   configs; its meter, staged by `install.sh --root` and run under qemu-user,
//!   sends `--sim` windows that a real local processor accepts, and its
//!   screen draws that meter's state;
//! - the package for this machine, installed for real by `install.sh
//!   --package`, makes the service user, the groups, the device key (0600) and
//!   the configs (0640); the installed meter, started as the service user with
//!   the installed config, has its windows accepted; an upgrade keeps an
//!   edited config and the key, a removal keeps both, a purge removes the
//!   configs and the outbox and keeps the key; a from-source install moves to
//!   the package keeping its key.
//!
//! The packages come from the folder `WATTSTREAM_TEST_PACKAGES` names
//! (scripts/test.sh builds them there first); without it these tests say they
//! were skipped. The real install also needs `WATTSTREAM_REAL_INSTALL=1`
//! (`.ci/run`), root, and a machine with no meter installed.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::meter::{Launcher, Meter};
use common::{Server, all_events, register, wait_for};

fn packages() -> Option<PathBuf> {
    let dir = std::env::var_os("WATTSTREAM_TEST_PACKAGES")?;
    Some(PathBuf::from(dir))
}

/// The newest package for `arch` in `dir`; a test that was given the folder
/// fails when it is not there.
fn package(dir: &Path, arch: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("wattstream-meter_") && name.ends_with(&format!("_{arch}.deb"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("no wattstream-meter package for {arch} in {}", dir.display()))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

/// (ELF class, machine) of a binary: (2, 183) is 64-bit aarch64, (1, 40) 32-bit ARM.
fn elf(path: &Path) -> (u8, u16) {
    let head = std::fs::read(path).unwrap();
    assert_eq!(&head[..4], b"\x7fELF", "{} is an ELF binary", path.display());
    (head[4], u16::from_le_bytes([head[18], head[19]]))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_arm_package_holds_its_architecture_and_its_meter_is_accepted_under_emulation() {
    let Some(dir) = packages() else {
        return eprintln!("package test skipped: set WATTSTREAM_TEST_PACKAGES (scripts/test.sh does)");
    };
    for (arch, qemu, sysroot, machine) in [
        ("arm64", "qemu-aarch64", "/usr/aarch64-linux-gnu", (2, 183)),
        ("armhf", "qemu-arm", "/usr/arm-linux-gnueabihf", (1, 40)),
    ] {
        let deb = package(&dir, arch);
        let field = |name: &str| run(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(name));
        assert_eq!(field("Architecture").trim(), arch);
        assert!(field("Depends").contains("libc6 (>= 2."), "{}", field("Depends"));
        // Staged the way a user stages one: install.sh --root unpacks it and
        // writes the configs (no maintainer scripts run in a staging tree).
        let data = tempfile::tempdir().unwrap();
        let server = Server::start(&data.path().join("processor"));
        let root = tempfile::tempdir().unwrap();
        run(Command::new("bash")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../install.sh"))
            .arg("--root")
            .arg(root.path())
            .arg("--package")
            .arg(&deb)
            .args(["--processor-url", &server.url]));
        let config = std::fs::read_to_string(root.path().join("etc/wattstream/meter.toml")).unwrap();
        assert!(
            config.contains(&format!("processor = \"{}\"", server.url)),
            "{config}"
        );
        let bin = |name: &str| root.path().join("usr/bin").join(name);
        for b in ["power-meter", "power-meter-display"] {
            assert_eq!(elf(&bin(b)), machine, "{b} in the {arch} package");
            let unit =
                std::fs::read_to_string(root.path().join(format!("lib/systemd/system/{b}.service"))).unwrap();
            assert!(
                unit.contains(&format!("ExecStart=/usr/bin/{b} run --config /etc/wattstream/")),
                "the {b} unit starts the packaged binary:\n{unit}"
            );
        }
        for f in ["meter.toml", "display.toml"] {
            assert!(
                root.path().join("usr/share/wattstream-meter").join(f).exists(),
                "{f}"
            );
        }

        // The emulated meter, against the processor on this machine.
        let launcher = Launcher::emulated(qemu, Path::new(sysroot), &bin("power-meter"));
        let meter_dir = data.path().join("meter");
        let (config, device_id, public_key) = Meter::provision_with(&launcher, &meter_dir, &server.url, "");
        assert_eq!(register(&server, &public_key).await, device_id);
        let mut meter = Meter::start_with(&launcher, &meter_dir, &config, device_id.clone(), public_key);
        wait_for(
            &format!("windows from the {arch} meter"),
            Duration::from_secs(90),
            async || all_events(&server, &device_id).await.len() >= 3,
        )
        .await;
        meter.stop();
        let state = meter.state().expect("the meter wrote its state file");
        let link = &state["link"];
        assert!(
            link["last_send"].as_str().is_some_and(|s| s.starts_with("ok (")) && link["dead_lettered"] == 0,
            "the {arch} meter saw its windows accepted: {state}"
        );

        // The packaged screen, emulated, draws that meter's state.
        let frames = meter_dir.join("frames");
        let mut screen = Launcher::emulated(qemu, Path::new(sysroot), &bin("power-meter-display"))
            .command()
            .args(["run", "--state"])
            .arg(meter_dir.join("data/state.json"))
            .arg("--png-dir")
            .arg(&frames)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(
            &format!("a frame from the {arch} screen"),
            Duration::from_secs(60),
            async || frames.join("frame.png").exists() || screen.try_wait().unwrap().is_some(),
        )
        .await;
        let exited = screen.try_wait().unwrap();
        let _ = screen.kill();
        let _ = screen.wait();
        assert!(exited.is_none(), "the {arch} screen is still running: {exited:?}");
        assert!(frames.join("frame.png").exists());
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn exists(what: &str, args: &[&str]) -> bool {
    Command::new(what)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn package_status() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "wattstream-meter"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn owner_mode(path: &str) -> (u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (m.uid(), m.gid(), m.permissions().mode() & 0o777)
}

fn id_of(what: &str, name: &str) -> u32 {
    let out = Command::new("getent").args([what, name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(':')
        .nth(2)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_package_installs_runs_as_the_service_user_and_keeps_the_key_through_upgrade_remove_purge_and_from_source()
 {
    let Some(dir) = packages() else {
        return eprintln!(
            "real package install skipped: set WATTSTREAM_TEST_PACKAGES (scripts/test.sh does)"
        );
    };
    if std::env::var("WATTSTREAM_REAL_INSTALL").as_deref() != Ok("1") {
        return eprintln!(
            "real package install skipped: set WATTSTREAM_REAL_INSTALL=1 to let it change this machine"
        );
    }
    if !is_root() {
        return eprintln!("real package install skipped: not root");
    }
    for p in [
        "/etc/wattstream",
        "/var/lib/wattstream",
        "/usr/local/bin/power-meter",
        "/usr/bin/power-meter",
    ] {
        if Path::new(p).exists() {
            return eprintln!(
                "real package install skipped: {p} exists (this machine has an install of its own)"
            );
        }
    }
    assert!(
        !package_status().contains("installed"),
        "no wattstream-meter package yet"
    );
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let deb = package(&dir, arch.trim());
    let _cleanup = Cleanup {
        user_existed: exists("id", &["wattstream"]),
        groups_existed: ["i2c", "spi", "gpio"]
            .iter()
            .map(|g| exists("getent", &["group", g]))
            .collect(),
    };
    let install_sh = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../install.sh");

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&data.path().join("processor"));
    let out = run(Command::new("bash")
        .arg(&install_sh)
        .arg("--package")
        .arg(&deb)
        .args(["--processor-url", &server.url]));
    assert!(out.contains("register this meter"), "{out}");
    assert_eq!(package_status(), "install ok installed");

    // What the maintainer scripts made.
    let (uid, gid) = (id_of("passwd", "wattstream"), id_of("group", "wattstream"));
    for g in ["i2c", "spi", "gpio"] {
        assert!(exists("getent", &["group", g]), "group {g}");
    }
    assert_eq!(owner_mode("/var/lib/wattstream/device.pem"), (uid, gid, 0o600));
    assert_eq!(owner_mode("/var/lib/wattstream"), (uid, gid, 0o700));
    for f in ["/etc/wattstream/meter.toml", "/etc/wattstream/display.toml"] {
        assert_eq!(owner_mode(f), (0, gid, 0o640), "{f}");
    }
    let config = std::fs::read_to_string("/etc/wattstream/meter.toml").unwrap();
    assert!(
        config.contains(&format!("processor = \"{}\"", server.url)),
        "{config}"
    );
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/power-meter.service").exists(),
        "the meter's unit is enabled"
    );

    // The installed meter as the service user, with the installed config.
    let id =
        run(Command::new("/usr/bin/power-meter").args(["id", "--key", "/var/lib/wattstream/device.pem"]));
    let public_key = id
        .lines()
        .find_map(|l| l.strip_prefix("public_key: "))
        .unwrap()
        .trim();
    let device_id = register(&server, public_key).await;
    let mut meter = Command::new("setpriv")
        .args(["--reuid=wattstream", "--regid=wattstream", "--init-groups", "--"])
        .args([
            "/usr/bin/power-meter",
            "run",
            "--sim",
            "--config",
            "/etc/wattstream/meter.toml",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "a window from the installed meter",
        Duration::from_secs(60),
        async || !all_events(&server, &device_id).await.is_empty(),
    )
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &meter.id().to_string()])
        .status();
    let _ = meter.wait();
    assert!(Path::new("/var/lib/wattstream/outbox.db").exists());

    // An upgrade (the same version again: dpkg runs every upgrade script).
    let key = std::fs::read("/var/lib/wattstream/device.pem").unwrap();
    let edited = format!("{config}# edited by its owner\n");
    std::fs::write("/etc/wattstream/meter.toml", &edited).unwrap();
    run(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(
        std::fs::read_to_string("/etc/wattstream/meter.toml").unwrap(),
        edited
    );
    assert_eq!(std::fs::read("/var/lib/wattstream/device.pem").unwrap(), key);

    // Removal keeps configs and the key; purge keeps only the key.
    run(Command::new("bash").arg(&install_sh).arg("--uninstall"));
    assert_eq!(package_status(), "deinstall ok config-files");
    assert!(!Path::new("/usr/bin/power-meter").exists());
    assert!(Path::new("/etc/wattstream/meter.toml").exists());
    assert_eq!(std::fs::read("/var/lib/wattstream/device.pem").unwrap(), key);
    let out = run(Command::new("dpkg").args(["--purge", "wattstream-meter"]));
    assert!(out.contains("kept the device key"), "{out}");
    assert!(
        !Path::new("/etc/wattstream/meter.toml").exists()
            && !Path::new("/var/lib/wattstream/outbox.db").exists()
    );
    assert_eq!(std::fs::read("/var/lib/wattstream/device.pem").unwrap(), key);

    // A meter installed from source before packages existed moves to the
    // package with its identity: the from-source units (which would shadow
    // the package's) and binaries go, the key stays.
    let host_bins = common::meter::bin().parent().unwrap().to_path_buf();
    run(Command::new("bash")
        .arg(&install_sh)
        .arg("--bin-dir")
        .arg(&host_bins)
        .args(["--processor-url", &server.url]));
    assert!(Path::new("/etc/systemd/system/power-meter.service").exists());
    let out = run(Command::new("bash").arg(&install_sh).arg("--package").arg(&deb));
    assert!(out.contains("removed the from-source unit"), "{out}");
    for gone in [
        "/etc/systemd/system/power-meter.service",
        "/etc/systemd/system/power-meter-display.service",
        "/usr/local/bin/power-meter",
        "/usr/local/bin/power-meter-display",
    ] {
        assert!(!Path::new(gone).exists(), "{gone}");
    }
    assert_eq!(package_status(), "install ok installed");
    assert_eq!(std::fs::read("/var/lib/wattstream/device.pem").unwrap(), key);
}

/// Leaves the machine as it found it, also when an assertion failed midway.
struct Cleanup {
    user_existed: bool,
    groups_existed: Vec<bool>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "wattstream-meter"])
            .output();
        for f in [
            "/usr/local/bin/power-meter",
            "/usr/local/bin/power-meter-display",
            "/etc/systemd/system/power-meter.service",
            "/etc/systemd/system/power-meter-display.service",
        ] {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir_all("/var/lib/wattstream");
        let _ = std::fs::remove_dir_all("/etc/wattstream");
        if !self.user_existed {
            let _ = Command::new("userdel").arg("wattstream").status();
        }
        for (g, existed) in ["i2c", "spi", "gpio"].iter().zip(&self.groups_existed) {
            if !existed {
                let _ = Command::new("groupdel").arg(g).status();
            }
        }
    }
}

/// `preinst` with `uname -m` answering `machine` (a stand-in on PATH), as dpkg
/// runs it for a package of `arch`.
fn preinst_on(arch: &str, machine: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let uname = dir.path().join("uname");
    std::fs::write(&uname, format!("#!/bin/sh\necho {machine}\n")).unwrap();
    std::fs::set_permissions(&uname, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap());
    Command::new("sh")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging/meter/preinst"))
        .arg("install")
        .env("PATH", path)
        .env("DPKG_MAINTSCRIPT_ARCH", arch)
        .output()
        .unwrap()
}

#[test]
fn the_armhf_package_refuses_an_armv6_pi_and_takes_armv7_and_later() {
    let v6 = preinst_on("armhf", "armv6l");
    assert!(!v6.status.success(), "a Pi Zero W is refused");
    assert!(String::from_utf8_lossy(&v6.stderr).contains("ARMv6"));
    for (arch, machine) in [
        ("armhf", "armv7l"),
        ("armhf", "aarch64"),
        ("arm64", "aarch64"),
        ("amd64", "x86_64"),
    ] {
        assert!(preinst_on(arch, machine).status.success(), "{arch} on {machine}");
    }
}
