//! Where frames go: the ST7735 over SPI on a Pi, or PNG files for simulation and
//! tests. Both take the same framebuffer; the panel backend sends only the
//! rectangles that changed.

pub mod png;
pub mod st7735;

use embedded_graphics::primitives::Rectangle;

use crate::framebuffer::Framebuffer;

/// Why a frame could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum PanelError {
    #[error("{0}")]
    Io(String),
    #[error("SPI or GPIO write to the panel failed")]
    Bus,
}

/// A place to show frames.
pub trait Panel {
    /// Shows `frame`; `dirty` lists the rectangles that changed since the last
    /// frame shown (the whole frame the first time). Returns the pixels sent.
    fn show(&mut self, frame: &Framebuffer, dirty: &[Rectangle]) -> Result<u64, PanelError>;
}
