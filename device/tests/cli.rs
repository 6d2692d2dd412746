//! The provisioning commands of `power-meter` as a user runs them: keygen, id and
//! sign, including the cases that must fail. One test checks a signed envelope
//! with an independent implementation (Python `cryptography`).

#[path = "../../sdk/tests/support/runner.rs"]
mod runner;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn power_meter(args: &[&str], stdin: &str) -> Output {
    let mut child = runner::command(env!("CARGO_BIN_EXE_power-meter"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("power-meter runs");
    // The command may exit before reading its input (a missing key, say): a
    // broken pipe here is not the test's concern, the exit status is.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn identity(out: &Output) -> (String, String) {
    let stdout = text(&out.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
            .trim()
            .to_string()
    };
    (field("device_id:"), field("public_key:"))
}

fn keygen(path: &Path) -> (String, String) {
    let out = power_meter(&["keygen", "--key", path.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    identity(&out)
}

#[test]
fn keygen_writes_a_private_key_and_id_reads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.pem");
    let (id, pk) = keygen(&path);
    assert_eq!(id.len(), 40);
    assert!(pk.starts_with("04") && pk.len() == 130);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));

    let out = power_meter(&["id", "--key", path.to_str().unwrap()], "");
    assert!(out.status.success());
    assert_eq!(identity(&out), (id, pk));
    // The secret never reaches the output or the log.
    let secret_line = pem.lines().nth(1).unwrap();
    assert!(!text(&out.stdout).contains(secret_line) && !text(&out.stderr).contains(secret_line));
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.pem");
    let (first, _) = keygen(&path);
    let out = power_meter(&["keygen", "--key", path.to_str().unwrap()], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    let out = power_meter(&["id", "--key", path.to_str().unwrap()], "");
    assert_eq!(identity(&out).0, first, "the old key is untouched");

    let out = power_meter(&["keygen", "--force", "--key", path.to_str().unwrap()], "");
    assert!(out.status.success());
    assert_ne!(identity(&out).0, first);
}

#[test]
fn a_key_readable_by_others_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.pem");
    keygen(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = power_meter(&["id", "--key", path.to_str().unwrap()], "");
    assert!(out.status.success());
    let log = text(&out.stderr);
    assert!(
        log.contains("readable by other users") && log.contains("0640"),
        "{log}"
    );
}

#[test]
fn sign_rejects_invalid_input_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.pem");
    keygen(&path);
    let key = path.to_str().unwrap();
    for (input, message) in [
        ("", "no input"),
        ("not json", "bad JSON"),
        (
            r#"{"timestamp":1795514493}"#,
            "missing field `data.sensor_reading`",
        ),
        (r#"{"sensor_reading":-1,"timestamp":1795514493}"#, ">= 0"),
        (r#"[1,2,3]"#, "must be a JSON object"),
    ] {
        let out = power_meter(&["sign", "--key", key], input);
        assert!(!out.status.success(), "{input:?} must fail");
        assert!(
            out.stdout.is_empty(),
            "nothing is printed on stdout for {input:?}"
        );
        assert!(
            text(&out.stderr).contains(message),
            "{input:?}: {}",
            text(&out.stderr)
        );
    }
    let out = power_meter(&["sign", "--key", "/nonexistent/key.pem"], "{}");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent/key.pem"));
}

#[test]
fn signed_envelope_verifies_with_python_cryptography() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.pem");
    let (_, pk) = keygen(&path);
    let data =
        r#"{"sensor_reading":4.21,"timestamp":1795514493,"seq":1042,"window_s":5,"energy_wh":0.00585}"#;
    let out = power_meter(
        &["sign", "--key", path.to_str().unwrap()],
        &format!("  {data}\n\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = text(&out.stdout);
    assert!(body.contains(&pk));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verify_envelope.py");
    let check = |body: &str| {
        let mut child = Command::new("python3")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 is installed (the test command installs it)");
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let verified = check(&body);
    assert!(
        verified.status.success(),
        "python says: {}",
        text(&verified.stderr)
    );
    assert_eq!(
        text(&verified.stdout).trim(),
        data,
        "the signed bytes are the trimmed input"
    );

    // The same checker refuses a tampered reading, so the pass above means something.
    let tampered = check(&body.replace("4.21", "4.22"));
    assert!(!tampered.status.success());
    assert!(text(&tampered.stderr).contains("does not verify"));
}
