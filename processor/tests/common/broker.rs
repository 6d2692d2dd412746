//! A Mosquitto broker of the test's own, on a free port, with persistence
//! in a directory the test owns: tests do not see each other's messages (the
//! topics are fixed by the contract, so a shared broker would mix them), and
//! a test can stop and restart its broker. Needs Debian's `mosquitto`
//! (scripts/test.sh installs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// A TLS listener's port and its certificate and key, when asked for.
    tls: Option<(u16, PathBuf, PathBuf)>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start(dir: &Path) -> Broker {
        std::fs::create_dir_all(dir).unwrap();
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
            tls: None,
        };
        b.spawn();
        b
    }

    /// Also listens with TLS (certificate and key PEM files) on another port.
    pub fn start_with_tls(dir: &Path, cert: &Path, key: &Path) -> Broker {
        std::fs::create_dir_all(dir).unwrap();
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
            tls: Some((free_port(), cert.to_path_buf(), key.to_path_buf())),
        };
        b.spawn();
        b
    }

    /// What Mosquitto's own clients need to reach this broker at QoS 1 on `topic`.
    fn client_args(&self, topic: &str) -> Vec<String> {
        [
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
        ]
        .map(String::from)
        .to_vec()
    }

    /// `mqtts://127.0.0.1:PORT` of the TLS listener.
    pub fn tls_url(&self) -> String {
        format!(
            "mqtts://127.0.0.1:{}",
            self.tls.as_ref().expect("a TLS listener").0
        )
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        let tls = match &self.tls {
            Some((port, cert, key)) => format!(
                "listener {port} 127.0.0.1\ncertfile {}\nkeyfile {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        std::fs::write(
            &conf,
            tls + &format!(
                "user root\nlistener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 max_queued_messages 100000\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n",
                self.port,
                self.dir.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto starts (apt install mosquitto; scripts/test.sh does)");
        // Mosquitto says when it listens; wait for that line rather than a
        // time. (Its log goes to stderr, which is not block-buffered.)
        let mut out = BufReader::new(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 || Instant::now() > deadline {
                panic!("mosquitto did not start listening on {}", self.port);
            }
            if line.contains(" running") {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        // Its log stays beside its persistence, for a failing test to look at.
        let log = self.dir.join("mosquitto.log");
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            for l in out.lines().map_while(Result::ok) {
                let _ = writeln!(f, "{l}");
            }
        });
        self.child = Some(child);
    }

    /// SIGTERM (Mosquitto saves its persistence file) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// Stops and starts again on the same port, with the same persistence.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `mosquitto_sub` on `topic`, returning once the broker has acknowledged
/// the subscription; `next()` gives each message's payload.
pub struct Sub {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Sub {
    pub fn start(broker: &Broker, topic: &str) -> Sub {
        // Line-buffered: piped, mosquitto_sub would hold its output back.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(broker.client_args(topic))
            .arg("-d")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("mosquitto_sub starts (apt install mosquitto-clients)");
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("mosquitto_sub gets its SUBACK");
            if line.contains("SUBACK") {
                break;
            }
        }
        Sub { child, lines: rx }
    }

    /// The next message payload (debug lines skipped), within `within`.
    pub fn next(&self, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .ok()?;
            if !line.starts_with("Client ") && !line.starts_with("Subscribed (mid") {
                return Some(line);
            }
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes each of `messages` with `mosquitto_pub` (QoS 1, MQTT 3.1.1:
/// an ordinary client, not this project's code).
pub fn publish(broker: &Broker, topic: &str, messages: &[String]) {
    let mut child = publish_in_background(broker, topic, messages);
    assert!(child.wait().unwrap().success(), "mosquitto_pub failed");
}

/// Like [`publish`], returning while `mosquitto_pub` is still at it.
pub fn publish_in_background(broker: &Broker, topic: &str, messages: &[String]) -> Child {
    use std::io::Write;
    let mut child = Command::new("mosquitto_pub")
        .args(broker.client_args(topic))
        .arg("-l")
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub starts");
    let mut stdin = child.stdin.take().unwrap();
    let lines: Vec<String> = messages.to_vec();
    // Written from a thread: the pipe holds 64 KiB, the caller must not wait for the rest.
    std::thread::spawn(move || {
        for m in lines {
            assert!(!m.contains('\n'), "one message per line");
            if writeln!(stdin, "{m}").is_err() {
                return;
            }
        }
    });
    child
}
