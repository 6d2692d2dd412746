//! Starting one of the workspace's own binaries from a test, through
//! `WATTSTREAM_TEST_RUNNER` when it is set. scripts/test.sh runs the meter's
//! and the screen's tests for ARM under qemu-user; qemu-user does not follow
//! an `exec` of another ARM binary (this machine has no binfmt_misc), so a
//! test starts it through the same emulator. Shared by the test suites that
//! start binaries (`#[path]`), not part of any crate's API.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// `program`, or `RUNNER... program` when `WATTSTREAM_TEST_RUNNER` is set.
pub fn command(program: impl AsRef<Path>) -> Command {
    let runner = std::env::var("WATTSTREAM_TEST_RUNNER").unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(emulator) => {
            let mut c = Command::new(emulator);
            c.args(words).arg(program.as_ref());
            c
        }
        None => Command::new(program.as_ref()),
    }
}
