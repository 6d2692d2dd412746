//! The frame in memory: 160×128 RGB565 pixels that the layout draws into with
//! embedded-graphics. Both backends take their pixels from here — PNG for
//! simulation and tests, the ST7735 over SPI — so they show the same picture.
//! [`Framebuffer::dirty`] finds the rectangles that changed since the last frame,
//! so the panel backend sends only those.

use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::pixelcolor::raw::RawU16;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::Rectangle;

/// A frame of `width × height` RGB565 pixels, row-major.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Framebuffer {
    width: u32,
    height: u32,
    pixels: Vec<Rgb565>,
}

impl Framebuffer {
    pub fn new(width: u32, height: u32) -> Self {
        Framebuffer {
            width,
            height,
            pixels: vec![Rgb565::BLACK; (width * height) as usize],
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn pixel(&self, x: u32, y: u32) -> Rgb565 {
        self.pixels[(y * self.width + x) as usize]
    }

    /// The pixels of `area`, row by row, as the 16-bit words the panel takes.
    pub fn words(&self, area: &Rectangle) -> impl Iterator<Item = u16> + '_ {
        let (x0, y0) = (area.top_left.x as u32, area.top_left.y as u32);
        let (w, h) = (area.size.width, area.size.height);
        (y0..y0 + h).flat_map(move |y| (x0..x0 + w).map(move |x| RawU16::from(self.pixel(x, y)).into_inner()))
    }

    /// 8-bit RGB bytes of the whole frame (RGB565 widened the way a panel shows it).
    pub fn rgb8(&self) -> Vec<u8> {
        self.pixels
            .iter()
            .flat_map(|c| {
                let (r, g, b) = (c.r(), c.g(), c.b());
                [(r << 3) | (r >> 2), (g << 2) | (g >> 4), (b << 3) | (b >> 2)]
            })
            .collect()
    }

    /// Rectangles covering every pixel that differs from `previous` (one per band
    /// of consecutive changed rows, as narrow as the changes in it). All of the
    /// frame when there is no previous frame or its size differs.
    pub fn dirty(&self, previous: Option<&Framebuffer>) -> Vec<Rectangle> {
        let full = Rectangle::new(Point::zero(), Size::new(self.width, self.height));
        let Some(prev) = previous.filter(|p| p.width == self.width && p.height == self.height) else {
            return vec![full];
        };
        let row_span = |y: u32| {
            let row = (y * self.width) as usize..((y + 1) * self.width) as usize;
            let (a, b) = (&self.pixels[row.clone()], &prev.pixels[row]);
            let first = a.iter().zip(b).position(|(x, y)| x != y)?;
            let last = a.iter().zip(b).rposition(|(x, y)| x != y)?;
            Some((first as u32, last as u32))
        };
        let mut rects = Vec::new();
        let mut band: Option<(u32, u32, u32, u32)> = None; // y0, y1, x0, x1
        for y in 0..self.height {
            match (row_span(y), band.as_mut()) {
                (Some((x0, x1)), Some(b)) => {
                    b.1 = y;
                    b.2 = b.2.min(x0);
                    b.3 = b.3.max(x1);
                }
                (Some((x0, x1)), None) => band = Some((y, y, x0, x1)),
                (None, Some(_)) => rects.extend(band.take().map(to_rect)),
                (None, None) => {}
            }
        }
        rects.extend(band.map(to_rect));
        rects
    }
}

fn to_rect((y0, y1, x0, x1): (u32, u32, u32, u32)) -> Rectangle {
    Rectangle::new(
        Point::new(x0 as i32, y0 as i32),
        Size::new(x1 - x0 + 1, y1 - y0 + 1),
    )
}

impl OriginDimensions for Framebuffer {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for Framebuffer {
    type Color = Rgb565;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < self.width && (p.y as u32) < self.height {
                self.pixels[(p.y as u32 * self.width + p.x as u32) as usize] = c;
            }
        }
        Ok(())
    }

    fn clear(&mut self, color: Self::Color) -> Result<(), Self::Error> {
        self.pixels.fill(color);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_graphics::primitives::PrimitiveStyle;

    #[test]
    fn dirty_finds_only_what_changed() {
        let a = Framebuffer::new(160, 128);
        assert_eq!(a.dirty(None).len(), 1);
        assert!(a.dirty(Some(&a)).is_empty());
        let mut b = a.clone();
        Rectangle::new(Point::new(10, 20), Size::new(5, 3))
            .into_styled(PrimitiveStyle::with_fill(Rgb565::RED))
            .draw(&mut b)
            .unwrap();
        Pixel(Point::new(100, 100), Rgb565::GREEN).draw(&mut b).unwrap();
        let d = b.dirty(Some(&a));
        assert_eq!(
            d,
            vec![
                Rectangle::new(Point::new(10, 20), Size::new(5, 3)),
                Rectangle::new(Point::new(100, 100), Size::new(1, 1))
            ]
        );
        assert_eq!(
            b.words(&d[1]).collect::<Vec<_>>(),
            vec![RawU16::from(Rgb565::GREEN).into_inner()]
        );
    }
}
