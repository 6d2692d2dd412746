//! The ST7735 backend: the `st7735-lcd` driver on any embedded-hal 1.0 SPI device
//! and output pins. On a Pi that is `linux-embedded-hal`'s `SpidevDevice` and GPIO
//! character-device pins ([`open_hardware`]); in tests, a fake bus that decodes
//! the command stream. Frames go out as whole rectangles with the buffered write
//! (a few hundred SPI transfers a frame, not one per pixel), and only the
//! rectangles that changed.

use embedded_graphics::primitives::Rectangle;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::OutputPin;
use embedded_hal::spi::SpiDevice;
use st7735_lcd::{Orientation, ST7735};

use super::{Panel, PanelError};
use crate::config::PanelConfig;
use crate::framebuffer::Framebuffer;

/// A configured, initialised panel.
pub struct St7735Panel<SPI: SpiDevice, DC: OutputPin, RST: OutputPin> {
    lcd: ST7735<SPI, DC, RST>,
}

/// The MADCTL orientation for a rotation in degrees (0 or 180; the layout is landscape).
pub fn orientation(rotation: u16) -> Result<Orientation, String> {
    match rotation {
        0 => Ok(Orientation::Landscape),
        180 => Ok(Orientation::LandscapeSwapped),
        r => Err(format!(
            "panel.rotation: 0 or 180 (the layout is landscape), got {r}"
        )),
    }
}

impl<SPI: SpiDevice, DC: OutputPin, RST: OutputPin> St7735Panel<SPI, DC, RST> {
    /// Resets and initialises the controller, then sets orientation and offsets.
    pub fn new(
        spi: SPI,
        dc: DC,
        rst: RST,
        cfg: &PanelConfig,
        delay: &mut impl DelayNs,
    ) -> Result<Self, PanelError> {
        let mut lcd = ST7735::new(spi, dc, rst, cfg.rgb, cfg.inverted, cfg.width, cfg.height);
        lcd.init(delay).map_err(|_| PanelError::Bus)?;
        let o = orientation(cfg.rotation).map_err(PanelError::Io)?;
        lcd.set_orientation(&o).map_err(|_| PanelError::Bus)?;
        lcd.set_offset(cfg.offset_x, cfg.offset_y);
        Ok(St7735Panel { lcd })
    }
}

impl<SPI: SpiDevice, DC: OutputPin, RST: OutputPin> Panel for St7735Panel<SPI, DC, RST> {
    fn show(&mut self, frame: &Framebuffer, dirty: &[Rectangle]) -> Result<u64, PanelError> {
        let mut sent = 0;
        for r in dirty {
            let (x0, y0) = (r.top_left.x as u16, r.top_left.y as u16);
            let (x1, y1) = (x0 + r.size.width as u16 - 1, y0 + r.size.height as u16 - 1);
            self.lcd
                .set_pixels_buffered(x0, y0, x1, y1, frame.words(r))
                .map_err(|_| PanelError::Bus)?;
            sent += r.size.width as u64 * r.size.height as u64;
        }
        Ok(sent)
    }
}

/// The panel on a Pi: SPI device, DC, RST and an optional backlight from the config.
pub fn open_hardware(cfg: &PanelConfig) -> anyhow::Result<Box<dyn Panel>> {
    use anyhow::Context;
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    use linux_embedded_hal::spidev::{SpiModeFlags, SpidevOptions};
    use linux_embedded_hal::{CdevPin, Delay, SpidevDevice};

    let hint = "on a Raspberry Pi enable SPI (`sudo raspi-config nonint do_spi 0`); to run without a screen use --png-dir";
    let mut spi = SpidevDevice::open(&cfg.spi_device)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}; {hint}", cfg.spi_device.display()))?;
    spi.configure(
        &SpidevOptions::new()
            .bits_per_word(8)
            .max_speed_hz(cfg.spi_speed_hz)
            .mode(SpiModeFlags::SPI_MODE_0)
            .build(),
    )
    .with_context(|| format!("cannot configure {}", cfg.spi_device.display()))?;
    let mut chip =
        Chip::new(&cfg.gpio_chip).with_context(|| format!("cannot open {}", cfg.gpio_chip.display()))?;
    let mut output = |line: u32, name: &str, initial: u8| -> anyhow::Result<CdevPin> {
        let handle = chip
            .get_line(line)
            .and_then(|l| l.request(LineRequestFlags::OUTPUT, initial, "power-meter-display"))
            .with_context(|| format!("cannot claim GPIO{line} ({name}) on {}", cfg.gpio_chip.display()))?;
        Ok(CdevPin::new(handle)?)
    };
    let dc = output(cfg.dc_pin, "DC", 0)?;
    let rst = output(cfg.rst_pin, "RST", 1)?;
    if let Some(bl) = cfg.backlight_pin {
        // Held high for the life of the process.
        std::mem::forget(output(bl, "backlight", 1)?);
    }
    let panel = St7735Panel::new(spi, dc, rst, cfg, &mut Delay).context("the ST7735 did not initialise")?;
    Ok(Box::new(panel))
}
