//! `power-meter-display`: draws the meter's state on an ST7735 (or into PNG files).

use std::path::PathBuf;
use std::time::Duration;

use wattstream_sdk::time::{unix_now, unix_now_ms};

use anyhow::Result;
use clap::{Parser, Subcommand};
use wattstream_display::config::DisplayConfig;
use wattstream_display::framebuffer::Framebuffer;
use wattstream_display::panel::png::{PngPanel, write_png_scaled};
use wattstream_display::panel::{Panel, st7735};
use wattstream_display::{render, samples};
use wattstream_sdk::notify;

#[derive(Parser)]
#[command(name = "power-meter-display", version, about = "WattStream meter screen")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render one frame of a state file to a PNG.
    Render {
        #[arg(long)]
        state: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Render as of this Unix time (default: now).
        #[arg(long)]
        at: Option<u64>,
        /// Enlarge the image (1..=8), for documentation.
        #[arg(long, default_value_t = 1)]
        scale: u32,
    },
    /// Render every example screen (normal, four-digit, offline, no data, stale,
    /// unverified) to DIR/NAME.png.
    Samples {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        scale: u32,
    },
    /// Keep the screen up to date (1 Hz by default).
    Run {
        /// TOML configuration (every key optional; see README).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The meter's state file (overrides `state_file`).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Write frames to DIR/frame.png instead of driving the ST7735.
        #[arg(long)]
        png_dir: Option<PathBuf>,
    },
}

fn main() {
    wattstream_sdk::logging::init("info");
    if let Err(e) = run(Cli::parse()) {
        eprintln!("power-meter-display: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Render {
            state,
            out,
            at,
            scale,
        } => {
            let cfg = DisplayConfig::default();
            write_png_scaled(
                &render(&state, at.unwrap_or_else(unix_now), cfg.stale_after_s),
                &out,
                scale,
            )?;
            Ok(())
        }
        Command::Samples { out, scale } => {
            let tmp = out.join(".sample-state.json");
            std::fs::create_dir_all(&out)?;
            for (name, state) in samples::all() {
                let _ = std::fs::remove_file(&tmp);
                if let Some(s) = state {
                    s.write(&tmp)?;
                }
                write_png_scaled(
                    &render(&tmp, samples::NOW, 30),
                    &out.join(format!("{name}.png")),
                    scale,
                )?;
            }
            let _ = std::fs::remove_file(&tmp);
            Ok(())
        }
        Command::Run {
            config,
            state,
            png_dir,
        } => {
            let mut cfg = match &config {
                Some(path) => DisplayConfig::load(path)?,
                None => DisplayConfig::default(),
            };
            if let Some(s) = state {
                cfg.state_file = s;
            }
            let mut panel: Box<dyn Panel> = match &png_dir {
                Some(dir) => Box::new(PngPanel::new(dir)),
                None => st7735::open_hardware(&cfg.panel)?,
            };
            run_loop(&cfg, panel.as_mut())
        }
    }
}

fn run_loop(cfg: &DisplayConfig, panel: &mut dyn Panel) -> Result<()> {
    // There is nothing to flush: SIGTERM's default action (which systemd counts as
    // a clean stop) ends the process between frames or mid-frame alike; the next
    // start redraws the whole screen.
    let mut watchdog = notify::Watchdog::from_env();
    let mut previous: Option<Framebuffer> = None;
    let mut ready = false;
    tracing::info!(state = %cfg.state_file.display(), "power-meter-display running");
    loop {
        let frame = render(&cfg.state_file, unix_now(), cfg.stale_after_s);
        let dirty = frame.dirty(previous.as_ref());
        match panel.show(&frame, &dirty) {
            Ok(_) => previous = Some(frame),
            Err(e) => {
                tracing::warn!(error = %e, "could not show the frame; redrawing everything next time");
                previous = None;
            }
        }
        if !ready {
            notify::ready();
            ready = true;
        }
        watchdog.ping();
        // Wake at the next whole refresh period so the clock ticks evenly.
        let period = cfg.refresh_ms;
        let ms = unix_now_ms();
        std::thread::sleep(Duration::from_millis(period - ms % period));
    }
}
