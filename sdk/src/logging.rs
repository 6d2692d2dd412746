//! The log set-up of the three binaries (`power-meter`, `power-meter-display`,
//! `wattstream`): human-readable lines on stderr (journald adds the time and
//! unit), filtered by `RUST_LOG`, else by the binary's default level.

/// Installs the subscriber; `default` is the filter when `RUST_LOG` is unset
/// or invalid (`"info"`, `"warn"`, ...).
pub fn init(default: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into()),
        )
        .init();
}
