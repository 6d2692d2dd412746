//! Same picture on both backends: the ST7735 backend drives a fake SPI bus and
//! pins that decode the controller's command stream (SWRESET, SLPOUT, COLMOD,
//! MADCTL, CASET, RASET, RAMWR) into panel memory, which must equal the
//! framebuffer the PNG backend writes, pixel for pixel.

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;

use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;
use embedded_hal::delay::DelayNs;
use embedded_hal::digital::{ErrorType as PinErrorType, OutputPin};
use embedded_hal::spi::{ErrorType, Operation, SpiDevice};
use wattstream_display::config::PanelConfig;
use wattstream_display::framebuffer::Framebuffer;
use wattstream_display::panel::Panel;
use wattstream_display::panel::st7735::St7735Panel;
use wattstream_display::{render, samples};

const MEM_W: usize = 132;
const MEM_H: usize = 162;

/// The controller as far as the tests need it.
struct Controller {
    data_mode: bool,
    command: Option<u8>,
    params: Vec<u8>,
    swreset: bool,
    slpout: bool,
    colmod: Option<u8>,
    madctl: Option<u8>,
    columns: (u16, u16),
    rows: (u16, u16),
    cursor: (u16, u16),
    pending: Option<u8>,
    /// Memory in address order: index = row * MEM_H + column (landscape: columns up to 160).
    memory: Vec<u16>,
    transfers: u64,
    pixels: u64,
}

impl Controller {
    fn new() -> Self {
        Controller {
            data_mode: false,
            command: None,
            params: Vec::new(),
            swreset: false,
            slpout: false,
            colmod: None,
            madctl: None,
            columns: (0, 0),
            rows: (0, 0),
            cursor: (0, 0),
            pending: None,
            memory: vec![0; MEM_W * MEM_H],
            transfers: 0,
            pixels: 0,
        }
    }

    fn byte(&mut self, b: u8) {
        if !self.data_mode {
            self.command = Some(b);
            self.params.clear();
            self.pending = None;
            match b {
                0x01 => self.swreset = true,
                0x11 => self.slpout = true,
                0x2C => self.cursor = (self.columns.0, self.rows.0),
                _ => {}
            }
            return;
        }
        match self.command {
            Some(0x2C) => match self.pending.take() {
                None => self.pending = Some(b),
                Some(hi) => self.pixel(u16::from_be_bytes([hi, b])),
            },
            Some(cmd) => {
                self.params.push(b);
                let word = |p: &[u8], i: usize| u16::from_be_bytes([p[i], p[i + 1]]);
                match (cmd, self.params.len()) {
                    (0x2A, 4) => self.columns = (word(&self.params, 0), word(&self.params, 2)),
                    (0x2B, 4) => self.rows = (word(&self.params, 0), word(&self.params, 2)),
                    (0x3A, 1) => self.colmod = Some(b),
                    (0x36, 1) => self.madctl = Some(b),
                    _ => {}
                }
            }
            None => panic!("data before any command"),
        }
    }

    fn pixel(&mut self, colour: u16) {
        let (x, y) = self.cursor;
        assert!(
            x <= self.columns.1 && y <= self.rows.1,
            "write outside the address window"
        );
        self.memory[y as usize * MEM_H + x as usize] = colour;
        self.pixels += 1;
        self.cursor = if x < self.columns.1 {
            (x + 1, y)
        } else {
            (self.columns.0, y + 1)
        };
    }

    /// The frame as the controller holds it, from the given memory offset.
    fn frame(&self, dx: usize, dy: usize) -> Vec<u16> {
        (0..128)
            .flat_map(|y| (0..160).map(move |x| self.memory[(y + dy) * MEM_H + x + dx]))
            .collect()
    }
}

type Shared = Rc<RefCell<Controller>>;

struct FakeSpi(Shared);
struct DcPin(Shared);
struct RstPin;
struct NoDelay;

impl ErrorType for FakeSpi {
    type Error = Infallible;
}

impl SpiDevice for FakeSpi {
    fn transaction(&mut self, operations: &mut [Operation<'_, u8>]) -> Result<(), Infallible> {
        let mut c = self.0.borrow_mut();
        c.transfers += 1;
        for op in operations {
            if let Operation::Write(bytes) = op {
                for b in bytes.iter() {
                    c.byte(*b);
                }
            }
        }
        Ok(())
    }
}

impl PinErrorType for DcPin {
    type Error = Infallible;
}

impl OutputPin for DcPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.borrow_mut().data_mode = false;
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.borrow_mut().data_mode = true;
        Ok(())
    }
}

impl PinErrorType for RstPin {
    type Error = Infallible;
}

impl OutputPin for RstPin {
    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl DelayNs for NoDelay {
    fn delay_ns(&mut self, _: u32) {}
}

fn words(frame: &Framebuffer) -> Vec<u16> {
    frame
        .words(&Rectangle::new(Point::zero(), Size::new(160, 128)))
        .collect()
}

fn panel(cfg: &PanelConfig) -> (St7735Panel<FakeSpi, DcPin, RstPin>, Shared) {
    let c: Shared = Rc::new(RefCell::new(Controller::new()));
    let p = St7735Panel::new(FakeSpi(c.clone()), DcPin(c.clone()), RstPin, cfg, &mut NoDelay).unwrap();
    (p, c)
}

fn frames() -> Vec<(&'static str, Framebuffer)> {
    let dir = tempfile::tempdir().unwrap();
    samples::all()
        .into_iter()
        .map(|(name, state)| {
            let path = dir.path().join("state.json");
            let _ = std::fs::remove_file(&path);
            if let Some(s) = state {
                s.write(&path).unwrap();
            }
            (name, render(&path, samples::NOW, 30))
        })
        .collect()
}

#[test]
fn the_panel_shows_exactly_the_png_frame() {
    let cfg = PanelConfig {
        offset_x: 1,
        offset_y: 2,
        ..PanelConfig::default()
    };
    for (name, frame) in frames() {
        let (mut p, c) = panel(&cfg);
        let all = frame.dirty(None);
        p.show(&frame, &all).unwrap();
        let c = c.borrow();
        assert!(c.swreset && c.slpout, "{name}: controller initialised");
        assert_eq!(c.colmod, Some(0x05), "{name}: 16-bit colour");
        assert_eq!(c.madctl, Some(0x60 | 0x08), "{name}: landscape, BGR");
        assert_eq!(
            c.frame(1, 2),
            words(&frame),
            "{name}: panel memory differs from the PNG frame"
        );
        assert!(
            c.transfers < 2_000,
            "{name}: {} SPI transfers for one frame",
            c.transfers
        );
    }
}

#[test]
fn only_changed_regions_are_sent() {
    let cfg = PanelConfig::default();
    let (mut p, c) = panel(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    samples::all()[0].1.clone().unwrap().write(&path).unwrap();
    let first = render(&path, samples::NOW, 30);
    p.show(&first, &first.dirty(None)).unwrap();
    let full = c.borrow().pixels;
    assert_eq!(full, 160 * 128);

    // Nothing changed: nothing sent.
    let same = render(&path, samples::NOW, 30);
    assert_eq!(p.show(&same, &same.dirty(Some(&first))).unwrap(), 0);

    // One second later only the clock changes.
    let next = render(&path, samples::NOW + 1, 30);
    let dirty = next.dirty(Some(&first));
    let sent = p.show(&next, &dirty).unwrap();
    assert!(sent > 0 && sent < full / 20, "{sent} pixels for a clock tick");
    assert!(dirty.iter().all(|r| r.top_left.y < 13), "{dirty:?}");
    assert_eq!(c.borrow().frame(0, 0), words(&next));
}

#[test]
fn rotation_180_sets_the_swapped_landscape_mode() {
    let cfg = PanelConfig {
        rotation: 180,
        rgb: true,
        ..PanelConfig::default()
    };
    let (_p, c) = panel(&cfg);
    assert_eq!(c.borrow().madctl, Some(0xA0));
}
