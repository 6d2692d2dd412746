//! The screen's configuration: TOML, every key optional. Defaults match the
//! W3bstream demo's wiring of a 1.8" ST7735 on a Pi (CS=CE0 → `/dev/spidev0.0`,
//! DC=GPIO25, RST=GPIO24). README lists every key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything `power-meter-display run` can be told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisplayConfig {
    /// The meter's state file.
    pub state_file: PathBuf,
    /// Milliseconds between frames.
    pub refresh_ms: u64,
    /// A state file older than this many seconds is shown as stale.
    pub stale_after_s: u64,
    pub panel: PanelConfig,
}

/// The ST7735 and its wiring.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PanelConfig {
    pub spi_device: PathBuf,
    pub spi_speed_hz: u32,
    pub gpio_chip: PathBuf,
    /// Data/command pin (BCM number).
    pub dc_pin: u32,
    /// Reset pin (BCM number).
    pub rst_pin: u32,
    /// Backlight pin, if wired to a GPIO.
    pub backlight_pin: Option<u32>,
    /// 0 or 180 degrees.
    pub rotation: u16,
    /// Colour order: `true` for RGB panels, `false` for BGR ones.
    pub rgb: bool,
    /// Colour inversion (some panels need it).
    pub inverted: bool,
    /// Panel memory offsets (some 1.8" panels need 1 or 2).
    pub offset_x: u16,
    pub offset_y: u16,
    pub width: u32,
    pub height: u32,
}

impl Default for DisplayConfig {
    fn default() -> Self {
        DisplayConfig {
            state_file: PathBuf::from("/var/lib/wattstream/state.json"),
            refresh_ms: 1000,
            stale_after_s: 30,
            panel: PanelConfig::default(),
        }
    }
}

impl Default for PanelConfig {
    fn default() -> Self {
        PanelConfig {
            spi_device: PathBuf::from("/dev/spidev0.0"),
            spi_speed_hz: 16_000_000,
            gpio_chip: PathBuf::from("/dev/gpiochip0"),
            dc_pin: 25,
            rst_pin: 24,
            backlight_pin: None,
            rotation: 0,
            rgb: false,
            inverted: false,
            offset_x: 0,
            offset_y: 0,
            width: 160,
            height: 128,
        }
    }
}

impl DisplayConfig {
    /// Reads a TOML file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self, wattstream_sdk::config::ConfigError> {
        wattstream_sdk::config::load_toml(path, Self::check)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        wattstream_sdk::config::parse_toml(text, Self::check)
    }

    fn check(&self) -> Result<(), String> {
        crate::panel::st7735::orientation(self.panel.rotation)?;
        if self.panel.width != 160 || self.panel.height != 128 {
            return Err("panel.width and panel.height: the layout is for 160×128".into());
        }
        if self.refresh_ms < 100 {
            return Err("refresh_ms: at least 100".into());
        }
        Ok(())
    }
}
