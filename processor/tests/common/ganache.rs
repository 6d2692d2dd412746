//! A ganache node of the test's own (npm, `rewards/contracts/node_modules`,
//! installed by scripts/test.sh), on a free port, with one funded account
//! whose key the test holds in a 0600 file, as an operator's chain key is.
//! Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The funded account's private key (the test's own; never a real chain's).
pub const KEY: &str = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d";

pub struct Ganache {
    child: Child,
    pub rpc: String,
    pub key_file: PathBuf,
}

fn bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rewards/contracts/node_modules/.bin/ganache")
}

impl Ganache {
    pub fn start(dir: &Path) -> Ganache {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(
            bin().exists(),
            "{} is missing: run `npm ci` in rewards/contracts (scripts/test.sh does)",
            bin().display()
        );
        let child = Command::new(bin())
            .args([
                "--server.host",
                "127.0.0.1",
                "--server.port",
                &port.to_string(),
                "--chain.chainId",
                "1337",
                "--wallet.accounts",
                &format!("{KEY},1000000000000000000000"),
                "--logging.quiet",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ganache starts");
        let key_file = dir.join("chain.key");
        std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let g = Ganache {
            child,
            rpc: format!("http://127.0.0.1:{port}"),
            key_file,
        };
        g.wait_ready();
        g
    }

    /// Until it listens (ganache opens its port once the chain is ready).
    fn wait_ready(&self) {
        let start = Instant::now();
        let addr = self.rpc.trim_start_matches("http://").to_string();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "ganache did not start at {}",
                self.rpc
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Ganache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
