//! The PNG backend: each frame written as an 8-bit RGB PNG, atomically (temporary
//! file, then rename) so a viewer never reads half an image.

use std::path::{Path, PathBuf};

use embedded_graphics::primitives::Rectangle;
use wattstream_sdk::fsutil::{WriteOptions, write_atomic};

use super::{Panel, PanelError};
use crate::framebuffer::Framebuffer;

/// Writes `frame` to `path` as PNG.
pub fn write_png(frame: &Framebuffer, path: &Path) -> Result<(), PanelError> {
    write_png_scaled(frame, path, 1)
}

/// Writes `frame` enlarged `scale` times (nearest neighbour, for documentation).
pub fn write_png_scaled(frame: &Framebuffer, path: &Path, scale: u32) -> Result<(), PanelError> {
    let scale = scale.clamp(1, 8);
    let err = |e: &dyn std::fmt::Display| PanelError::Io(format!("{}: {e}", path.display()));
    let (w, h) = (frame.width() * scale, frame.height() * scale);
    let mut png = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut png, w, h);
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| err(&e))?;
    let rgb = frame.rgb8();
    let data: Vec<u8> = if scale == 1 {
        rgb
    } else {
        let src_w = frame.width() as usize;
        (0..h as usize)
            .flat_map(|y| (0..w as usize).map(move |x| (y / scale as usize) * src_w + x / scale as usize))
            .flat_map(|i| [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]])
            .collect()
    };
    writer.write_image_data(&data).map_err(|e| err(&e))?;
    writer.finish().map_err(|e| err(&e))?;
    write_atomic(path, &png, WriteOptions::SHARED).map_err(|e| err(&e))
}

/// Reads an 8-bit RGB PNG: `(width, height, rgb bytes)`.
pub fn read_png(path: &Path) -> Result<(u32, u32, Vec<u8>), PanelError> {
    let err = |e: &dyn std::fmt::Display| PanelError::Io(format!("{}: {e}", path.display()));
    let decoder = ::png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).map_err(|e| err(&e))?,
    ));
    let mut reader = decoder.read_info().map_err(|e| err(&e))?;
    let mut buf = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| err(&"image too large"))?
    ];
    let info = reader.next_frame(&mut buf).map_err(|e| err(&e))?;
    if info.color_type != ::png::ColorType::Rgb || info.bit_depth != ::png::BitDepth::Eight {
        return Err(err(&"not an 8-bit RGB PNG"));
    }
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}

/// Writes every frame to `DIR/frame.png`.
pub struct PngPanel {
    path: PathBuf,
}

impl PngPanel {
    pub fn new(dir: &Path) -> Self {
        PngPanel {
            path: dir.join("frame.png"),
        }
    }
}

impl Panel for PngPanel {
    fn show(&mut self, frame: &Framebuffer, dirty: &[Rectangle]) -> Result<u64, PanelError> {
        if dirty.is_empty() && self.path.exists() {
            return Ok(0);
        }
        write_png(frame, &self.path)?;
        Ok(dirty
            .iter()
            .map(|r| r.size.width as u64 * r.size.height as u64)
            .sum())
    }
}
