//! # wattstream-display
//!
//! The meter's screen: the state file written by `power-meter` becomes a
//! 160×128 instrument panel ([`layout`]) drawn into a [`framebuffer`], shown on
//! an ST7735 over SPI or written as PNG ([`panel`]).

pub mod config;
pub mod framebuffer;
pub mod layout;
pub mod panel;
pub mod samples;
pub mod view;

use std::path::Path;

use framebuffer::Framebuffer;

/// Renders the screen for the state file at `path` as it should look at `now`.
pub fn render(path: &Path, now: u64, stale_after_s: u64) -> Framebuffer {
    let mut fb = Framebuffer::new(160, 128);
    layout::draw(&mut fb, &view::load(path, now, stale_after_s), now);
    fb
}
