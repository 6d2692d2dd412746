//! What the benchmark reads of a process from `/proc`: CPU time, memory and
//! the bytes it had written to storage. Linux only, like the rest of the
//! deployment.

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU seconds so far.
    pub cpu_s: f64,
    /// Resident set now, KiB.
    pub rss_kib: u64,
    /// Peak resident set, KiB.
    pub peak_kib: u64,
    /// Bytes it caused to be written to storage so far (`write_bytes` of
    /// `/proc/PID/io`: file pages it dirtied, whoever flushes them; not its
    /// socket writes).
    pub written: u64,
}

/// Reads `/proc/PID/stat`, `/proc/PID/status` and `/proc/PID/io`; zeros for
/// what cannot be read (a process that just exited).
pub fn usage(pid: u32) -> Usage {
    let cpu_s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .as_deref()
        .and_then(cpu_seconds)
        .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    };
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    Usage {
        cpu_s,
        rss_kib: kib("VmRSS:"),
        peak_kib: kib("VmHWM:"),
        written: written(&io).unwrap_or(0),
    }
}

/// What one thread name did so far, summed over the threads that carry it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThreadUsage {
    /// Bytes written to storage (`write_bytes` of `/proc/PID/task/TID/io`).
    pub written: u64,
    /// User + system CPU seconds (`/proc/PID/task/TID/stat`).
    pub cpu_s: f64,
}

/// What each thread of `pid` did so far, summed by thread name
/// (`store-writer`, `store-checkpoin`, `applet-worker`, the runtime's
/// `tokio-rt-worker`s; names are cut at 15 bytes). A thread that has exited
/// is no longer listed: what it did is only in the process's total.
pub fn by_thread_of(pid: u32) -> std::collections::BTreeMap<String, ThreadUsage> {
    by_thread(std::path::Path::new(&format!("/proc/{pid}/task")))
}

fn by_thread(tasks: &std::path::Path) -> std::collections::BTreeMap<String, ThreadUsage> {
    let mut out = std::collections::BTreeMap::<String, ThreadUsage>::new();
    for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).ok();
        let Some(name) = read("comm") else { continue };
        let (Some(n), Some(cpu_s)) = (
            read("io").as_deref().and_then(written),
            read("stat").as_deref().and_then(cpu_seconds),
        ) else {
            continue;
        };
        let row = out.entry(name.trim().to_string()).or_default();
        row.written += n;
        row.cpu_s += cpu_s;
    }
    out
}

/// User + system CPU seconds of a `/proc/PID/stat` (or a task's) text.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // Clock ticks per second: 100 on every Linux configuration we ship for.
    const TICKS: f64 = 100.0;
    // Fields after the command name, which may hold spaces and ')'.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?) / TICKS)
}

/// `write_bytes` of a `/proc/PID/io` text.
fn written(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:")?.trim().parse().ok())
}

/// The filesystem type `path` is on (`ext4`, `tmpfs`, ...), from
/// `/proc/self/mountinfo`: the longest mount point that contains it.
pub fn fs_type(path: &std::path::Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount = left.split_whitespace().nth(4)?.replace("\\040", " ");
            Some((mount, right.split_whitespace().next()?.to_string()))
        })
        .filter(|(mount, _)| path.starts_with(mount))
        .max_by_key(|(mount, _)| mount.len())
        .map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let u = super::usage(std::process::id());
        assert!(u.rss_kib > 0 && u.peak_kib >= u.rss_kib, "{u:?}");
        assert_eq!(super::usage(u32::MAX).rss_kib, 0);
    }

    #[test]
    fn reads_the_bytes_written_to_storage_not_the_write_calls() {
        let io = "rchar: 6976\nwchar: 512\nsyscr: 10\nsyscw: 1\nread_bytes: 0\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n";
        assert_eq!(super::written(io), Some(4096));
        assert_eq!(super::written("wchar: 512\n"), None);
    }

    #[test]
    fn sums_the_bytes_written_and_the_cpu_by_thread_name() {
        let dir = tempfile::tempdir().unwrap();
        // utime and stime are the 14th and 15th fields; a name with spaces
        // and ')' must not shift them.
        for (tid, name, bytes, utime, stime) in [
            (1, "store-writer", 4096, 150, 50),
            (2, "tokio-rt-worker", 8192, 300, 25),
            (3, "tokio-rt-worker", 4096, 100, 75),
        ] {
            let task = dir.path().join(tid.to_string());
            std::fs::create_dir(&task).unwrap();
            std::fs::write(task.join("comm"), format!("{name}\n")).unwrap();
            std::fs::write(
                task.join("io"),
                format!("rchar: 1\nwrite_bytes: {bytes}\ncancelled_write_bytes: 0\n"),
            )
            .unwrap();
            std::fs::write(
                task.join("stat"),
                format!("{tid} (a b) c) S 1 1 1 0 -1 4194560 10 0 0 0 {utime} {stime} 0 0 20 0 1 0 5 0 0\n"),
            )
            .unwrap();
        }
        // A thread that exited while being read: left out.
        std::fs::create_dir(dir.path().join("4")).unwrap();
        let by = super::by_thread(dir.path());
        assert_eq!(by.len(), 2, "{by:?}");
        assert_eq!(
            (by["store-writer"].written, by["tokio-rt-worker"].written),
            (4096, 12288)
        );
        assert_eq!(
            (by["store-writer"].cpu_s, by["tokio-rt-worker"].cpu_s),
            (2.0, 5.0)
        );
    }

    #[test]
    fn lists_this_process_s_threads_by_name() {
        let (stop, wait) = std::sync::mpsc::channel::<()>();
        let (named, started) = std::sync::mpsc::channel::<()>();
        // The thread names itself as it starts: read once it runs.
        let t = std::thread::Builder::new()
            .name("bench-probe".into())
            .spawn(move || {
                named.send(()).unwrap();
                wait.recv()
            })
            .unwrap();
        started.recv().unwrap();
        let by = super::by_thread_of(std::process::id());
        stop.send(()).unwrap();
        t.join().unwrap().unwrap();
        assert!(by.contains_key("bench-probe"), "{by:?}");
    }

    #[test]
    fn names_the_filesystem_of_a_path() {
        assert_eq!(super::fs_type(std::path::Path::new("/proc/self")), "proc");
        assert_ne!(super::fs_type(std::path::Path::new("/")), "unknown");
    }
}
