//! What the benchmark reads of a process from `/proc`: CPU time and memory.
//! Linux only, like the rest of the deployment.

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// User + system CPU seconds so far.
    pub cpu_s: f64,
    /// Resident set now, KiB.
    pub rss_kib: u64,
    /// Peak resident set, KiB.
    pub peak_kib: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`; zeros for what cannot be read
/// (a process that just exited).
pub fn usage(pid: u32) -> Usage {
    // Clock ticks per second: 100 on every Linux configuration we ship for.
    const TICKS: f64 = 100.0;
    let cpu_s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name, which may hold spaces and ')'.
            let rest: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some(rest.get(11)?.parse::<f64>().ok()? + rest.get(12)?.parse::<f64>().ok()?)
        })
        .map_or(0.0, |t| t / TICKS);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or(0)
    };
    Usage {
        cpu_s,
        rss_kib: kib("VmRSS:"),
        peak_kib: kib("VmHWM:"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let u = super::usage(std::process::id());
        assert!(u.rss_kib > 0 && u.peak_kib >= u.rss_kib, "{u:?}");
        assert_eq!(super::usage(u32::MAX).rss_kib, 0);
    }
}
