//! `install.sh` under `--root` (a staging tree: no users, no systemctl), and the
//! systemd units through `systemd-analyze verify`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use wattstream_device::config::MeterConfig;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The directory with the workspace's built binaries.
fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_power-meter"))
        .parent()
        .unwrap()
        .to_path_buf();
    for b in ["power-meter", "power-meter-display", "wattstream"] {
        assert!(
            dir.join(b).exists(),
            "{b} is not built in {}: run `cargo test --workspace`",
            dir.display()
        );
    }
    dir
}

fn install(root: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("bash")
        .arg(repo().join("install.sh"))
        .args(["--root"])
        .arg(root)
        .args(["--bin-dir"])
        .arg(bin_dir())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_meter_installs_idempotently_and_uninstalls_keeping_its_key() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let (ok, out) = install(r, &[]);
    assert!(ok, "{out}");
    let key = r.join("var/lib/wattstream/device.pem");
    for (path, want) in [
        (r.join("usr/local/bin/power-meter"), 0o755),
        (r.join("usr/local/bin/power-meter-display"), 0o755),
        (key.clone(), 0o600),
        (r.join("var/lib/wattstream"), 0o700),
        (r.join("etc/systemd/system/power-meter.service"), 0o644),
        (r.join("etc/systemd/system/power-meter-display.service"), 0o644),
    ] {
        assert_eq!(mode(&path), want, "{}", path.display());
    }
    assert!(
        out.contains("device_id:") && out.contains("public_key:"),
        "prints what to register: {out}"
    );
    // The installed config is valid and points at the installed key.
    let cfg = MeterConfig::load(&r.join("etc/wattstream/meter.toml")).unwrap();
    assert_eq!(cfg.key, Path::new("/var/lib/wattstream/device.pem"));
    assert!(r.join("etc/wattstream/display.toml").exists());

    let key_bytes = std::fs::read(&key).unwrap();
    let (ok, out) = install(r, &[]);
    assert!(ok && out.contains("nothing changed"), "{out}");
    assert_eq!(
        std::fs::read(&key).unwrap(),
        key_bytes,
        "the key is never overwritten"
    );

    let (ok, out) = install(r, &["--uninstall"]);
    assert!(ok, "{out}");
    assert!(!r.join("usr/local/bin/power-meter").exists());
    assert!(!r.join("etc/systemd/system/power-meter.service").exists());
    assert_eq!(std::fs::read(&key).unwrap(), key_bytes, "uninstall keeps the key");
    assert!(r.join("etc/wattstream/meter.toml").exists(), "and the config");

    let (ok, _) = install(r, &["--uninstall", "--purge"]);
    assert!(!ok, "purging needs a confirmation");
    assert!(key.exists());
    let (ok, out) = install(r, &["--uninstall", "--purge", "--yes"]);
    assert!(ok, "{out}");
    assert!(!key.exists() && !r.join("etc/wattstream").exists());
}

/// A user who copied `install.sh` alone to a Pi and forgot the package.
#[test]
fn a_meter_without_a_package_or_from_source_is_refused_with_the_way_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("install.sh");
    std::fs::copy(repo().join("install.sh"), &script).unwrap();
    let root = dir.path().join("root");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no meter package")
            && err.contains("scripts/package.sh")
            && err.contains("--from-source"),
        "{err}"
    );
    assert!(!root.join("usr").exists(), "nothing was installed");
    for bad in [
        &["--package", "x.deb", "--from-source"][..],
        &["--processor", "--package", "x.deb"],
        &["--processor-url", "ftp://processor.example"],
        &["--processor-url", "https://a\"b"],
    ] {
        let out = Command::new("bash").arg(&script).args(bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?} is a usage error");
    }
}

#[test]
fn a_processor_installs_with_a_private_admin_token() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let (ok, out) = install(r, &["--processor"]);
    assert!(ok, "{out}");
    assert_eq!(mode(&r.join("usr/local/bin/wattstream")), 0o755);
    let env = r.join("etc/wattstream/wattstream.env");
    assert_eq!(mode(&env), 0o600);
    let token = std::fs::read_to_string(&env).unwrap();
    assert!(token.starts_with("WATTSTREAM_ADMIN_TOKEN=") && token.trim().len() > 40);
    assert!(r.join("etc/systemd/system/wattstream.service").exists());
    let (ok, out) = install(r, &["--processor"]);
    assert!(ok && out.contains("nothing changed"), "{out}");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), token, "the token is kept");
}

#[test]
fn the_systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let bins = bin_dir();
    let mut units = Vec::new();
    for unit in [
        "power-meter.service",
        "power-meter-display.service",
        "wattstream.service",
    ] {
        let text = std::fs::read_to_string(repo().join("systemd").join(unit)).unwrap();
        // Point ExecStart at the built binaries: verify checks that they exist.
        let text = text.replace("/usr/local/bin/", &format!("{}/", bins.display()));
        for needed in [
            "Type=notify",
            "WatchdogSec=",
            "Restart=on-failure",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "ReadWritePaths=/var/lib/wattstream",
            "User=wattstream",
            "MemoryMax=",
            "TasksMax=",
            "LimitNOFILE=",
        ] {
            assert!(text.contains(needed), "{unit} lacks {needed}");
        }
        let path = dir.path().join(unit);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze is installed (scripts/test.sh installs systemd)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meter = std::fs::read_to_string(repo().join("systemd/power-meter.service")).unwrap();
    assert!(meter.contains("SupplementaryGroups=i2c spi gpio"));
    assert!(
        meter.contains("After=network-online.target time-sync.target"),
        "signs with a synchronised clock"
    );
}

#[test]
fn a_processor_installed_with_a_certificate_serves_https_and_sets_up_mosquitto() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["processor.example".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (r.join("in.crt"), r.join("in.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let args = [
        "--processor",
        "--tls-cert",
        c.to_str().unwrap(),
        "--tls-key",
        k.to_str().unwrap(),
        "--with-mosquitto",
    ];
    let (ok, out) = install(r, &args);
    assert!(ok, "{out}");
    let etc = r.join("etc/wattstream");
    assert_eq!(
        std::fs::read(etc.join("tls/server.key")).unwrap(),
        std::fs::read(&k).unwrap()
    );
    assert_eq!(mode(&etc.join("tls/server.key")), 0o640);
    let toml = std::fs::read_to_string(etc.join("wattstream.toml")).unwrap();
    for line in [
        "listen = \"0.0.0.0:8443\"",
        "cert = \"/etc/wattstream/tls/server.crt\"",
        "url = \"mqtt://127.0.0.1:1883\"",
        "password_file = \"/etc/wattstream/mqtt.password\"",
    ] {
        assert!(toml.contains(line), "{line} missing from\n{toml}");
    }
    assert_eq!(mode(&etc.join("mqtt.password")), 0o640);
    let mosq = r.join("etc/mosquitto");
    assert_eq!(mode(&mosq.join("certs/wattstream.key")), 0o600);
    let acl = std::fs::read_to_string(mosq.join("wattstream.acl")).unwrap();
    assert!(
        acl.contains("pattern write wattstream/v1/devices/%u/events"),
        "{acl}"
    );
    let (ok, out) = install(r, &args);
    assert!(ok && out.contains("nothing changed"), "{out}");

    // Without a certificate the processor stays on localhost and says how to open it.
    let plain = tempfile::tempdir().unwrap();
    let (ok, out) = install(plain.path(), &["--processor"]);
    assert!(ok && out.contains("--tls-cert"), "{out}");
    let toml = std::fs::read_to_string(plain.path().join("etc/wattstream/wattstream.toml")).unwrap();
    assert!(toml.contains("listen = \"127.0.0.1:8080\""), "{toml}");
}
