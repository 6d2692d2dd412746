//! `power-meter-display run --png-dir`: the first frame comes at once, a missing
//! or broken state file is a screen and not an exit, and new state shows up.

#[path = "../../sdk/tests/support/runner.rs"]
mod runner;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use wattstream_display::panel::png::read_png;
use wattstream_display::samples;

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn frame(dir: &Path) -> Option<Vec<u8>> {
    read_png(&dir.join("frame.png")).ok().map(|(_, _, px)| px)
}

#[test]
fn runs_through_missing_broken_and_good_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let frames = dir.path().join("frames");
    let mut child = runner::command(env!("CARGO_BIN_EXE_power-meter-display"))
        .args(["run", "--state"])
        .arg(&state)
        .arg("--png-dir")
        .arg(&frames)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the first frame", || frame(&frames).is_some());
    let no_data = frame(&frames).unwrap();

    std::fs::write(&state, "{ not json").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "a corrupt state file must not stop the screen"
    );

    let mut s = samples::all()[0].1.clone().unwrap();
    s.time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    s.write(&state).unwrap();
    wait_for("the live screen", || frame(&frames).is_some_and(|f| f != no_data));
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}
