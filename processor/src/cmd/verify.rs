//! `wattstream verify`: one envelope on stdin through the same admission
//! checks as ingest (structure, reading, timestamp, signature), offline.

use std::io::Read;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use wattstream_processor::pipeline::{admit, unix_now};

#[derive(ClapArgs)]
pub struct Args {
    /// Seconds a timestamp may be ahead of this machine's clock.
    #[arg(long, default_value_t = 300)]
    max_future_s: u64,
    /// Seconds a timestamp may be behind this machine's clock.
    #[arg(long, default_value_t = 604_800)]
    max_age_s: u64,
}

/// Prints the device id and answers 0, or prints the reason and answers 1.
pub fn run(args: Args) -> Result<i32> {
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body).context("reading stdin")?;
    match admit::admit(
        body.trim_ascii(),
        unix_now(),
        args.max_future_s,
        args.max_age_s,
        None,
    ) {
        Ok(event) => {
            println!("{}", event.device_id);
            Ok(0)
        }
        Err(r) => {
            println!("{}: {}", r.reason, r.detail);
            Ok(1)
        }
    }
}
