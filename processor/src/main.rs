//! `wattstream`: the processor's command line. It parses and dispatches; each
//! command's arguments and `run()` live in their own module under `cmd/`.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "wattstream", version, about = "WattStream data-stream processor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the processor.
    Serve(cmd::serve::Args),
    /// Check an envelope on stdin: structure, reading, timestamp and signature.
    /// Prints the device id and exits 0, or prints the reason and exits 1.
    Verify(cmd::verify::Args),
    /// Manage the device registry of a running processor.
    Device {
        #[command(subcommand)]
        command: cmd::device::Command,
    },
    /// Measure and print performance figures (never a pass/fail test).
    Bench(cmd::bench::Args),
    /// The local demo: a processor, the example applets, simulated meters, the screen.
    Demo(cmd::demo::Args),
    /// Check, replay and inspect the rewards ledger in a data directory.
    Rewards {
        #[command(subcommand)]
        command: cmd::rewards::Command,
    },
    /// Deploy the settlement contracts to an EVM chain.
    Chain {
        #[command(subcommand)]
        command: cmd::chain::Command,
    },
    /// A device maker's key and certificates (`onboarding.policy = "makers"`).
    Maker {
        #[command(subcommand)]
        command: cmd::onboarding::MakerCommand,
    },
    /// Work with applets.
    Applet {
        #[command(subcommand)]
        command: cmd::applet::Command,
    },
}

fn main() {
    let cli = Cli::parse();
    // The demo and the benchmark print their own tables: only warnings by default.
    let quiet = matches!(cli.command, Command::Demo(_) | Command::Bench(_));
    wattstream_sdk::logging::init(if quiet { "warn" } else { "info" });
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Device { command } => cmd::device::run(command),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Demo(args) => cmd::demo::run(args),
        Command::Rewards { command } => cmd::rewards::run(command),
        Command::Applet { command } => cmd::applet::run(command),
        Command::Maker { command } => cmd::onboarding::maker(command),
        Command::Chain { command } => cmd::chain::run(command),
    };
    std::process::exit(match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wattstream: {e:#}");
            1
        }
    });
}
