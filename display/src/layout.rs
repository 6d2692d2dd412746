//! The screen layout for a 160×128 ST7735, drawn with embedded-graphics: a small
//! instrument panel. Header (device id, clock), the power figure, link status, a
//! level bar coloured by the reward tiers, a ten-minute sparkline, and rewards.
//! One dark background, one text colour, one dim colour, and three signal
//! colours (green, amber, red) that always mean the same thing.

use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::ascii::{FONT_4X6, FONT_6X10};
use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Baseline, Text, TextStyleBuilder};
use profont::{PROFONT_12_POINT, PROFONT_14_POINT, PROFONT_18_POINT, PROFONT_24_POINT};
use wattstream_sdk::state::{LinkStatus, MeterState, ProofStatus};

use crate::framebuffer::Framebuffer;
use crate::view::{Screen, clock, format_amount, format_power};

const fn rgb(r: u8, g: u8, b: u8) -> Rgb565 {
    Rgb565::new(r >> 3, g >> 2, b >> 3)
}

const BG: Rgb565 = rgb(12, 15, 20);
const HEADER: Rgb565 = rgb(30, 37, 48);
const TRACK: Rgb565 = rgb(40, 46, 56);
const TEXT: Rgb565 = rgb(235, 238, 242);
const DIM: Rgb565 = rgb(120, 130, 145);
const GREEN: Rgb565 = rgb(52, 211, 120);
const AMBER: Rgb565 = rgb(255, 176, 32);
const RED: Rgb565 = rgb(255, 82, 82);
const TEAL: Rgb565 = rgb(45, 212, 191);
const TEAL_DARK: Rgb565 = rgb(16, 70, 68);

/// Below this a meter earns the top reward tier (the seed's rule).
const TIER_LOW_W: f64 = 3.0;
/// Below this, the middle tier.
const TIER_MID_W: f64 = 5.0;

/// The signal colour for a power level: green in the top reward tier, amber in
/// the middle one, red above.
pub fn level_colour(watts: f64) -> Rgb565 {
    match watts {
        w if w < TIER_LOW_W => GREEN,
        w if w < TIER_MID_W => AMBER,
        _ => RED,
    }
}

fn text(
    fb: &mut Framebuffer,
    s: &str,
    x: i32,
    y: i32,
    font: &'static embedded_graphics::mono_font::MonoFont,
    colour: Rgb565,
    align: Alignment,
) {
    let style = TextStyleBuilder::new()
        .alignment(align)
        .baseline(Baseline::Top)
        .build();
    let _ = Text::with_text_style(s, Point::new(x, y), MonoTextStyle::new(font, colour), style).draw(fb);
}

fn fill(fb: &mut Framebuffer, x: i32, y: i32, w: u32, h: u32, colour: Rgb565) {
    let _ = Rectangle::new(Point::new(x, y), Size::new(w, h))
        .into_styled(PrimitiveStyle::with_fill(colour))
        .draw(fb);
}

fn line(fb: &mut Framebuffer, a: (i32, i32), b: (i32, i32), colour: Rgb565, width: u32) {
    let _ = Line::new(Point::new(a.0, a.1), Point::new(b.0, b.1))
        .into_styled(PrimitiveStyle::with_stroke(colour, width))
        .draw(fb);
}

/// A 1-2-5 value at least `x` (and at least 5): the top of the bar and the chart.
fn scale_for(x: f64) -> f64 {
    let x = x.max(5.0);
    let exp = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * exp)
        .find(|v| *v >= x)
        .unwrap_or(10.0 * exp)
}

fn header(fb: &mut Framebuffer, id: &str, now: u64) {
    fill(fb, 0, 0, fb.width(), 13, HEADER);
    text(fb, "ID", 3, 2, &FONT_6X10, DIM, Alignment::Left);
    text(fb, id, 18, 2, &FONT_6X10, TEXT, Alignment::Left);
    text(fb, &clock(now), 150, 2, &FONT_6X10, TEXT, Alignment::Right);
    text(fb, "Z", 157, 4, &FONT_4X6, DIM, Alignment::Right);
}

fn proof_mark(fb: &mut Framebuffer, proof: ProofStatus, x: i32, y: i32) {
    match proof {
        ProofStatus::Verified => {
            line(fb, (x, y + 5), (x + 3, y + 8), GREEN, 2);
            line(fb, (x + 3, y + 8), (x + 9, y + 1), GREEN, 2);
        }
        ProofStatus::Unverified => text(fb, "?", x + 2, y, &FONT_6X10, AMBER, Alignment::Left),
        ProofStatus::Mismatch => {
            line(fb, (x + 1, y + 1), (x + 8, y + 8), RED, 2);
            line(fb, (x + 8, y + 1), (x + 1, y + 8), RED, 2);
        }
        ProofStatus::Unknown => line(fb, (x + 2, y + 5), (x + 7, y + 5), DIM, 1),
    }
}

fn sparkline(fb: &mut Framebuffer, history: &[f64], scale: f64, top: i32, height: i32) {
    let (left, right) = (4, 156);
    let bottom = top + height;
    line(fb, (left, bottom), (right, bottom), TRACK, 1);
    text(fb, "10 MIN", left, top, &FONT_4X6, DIM, Alignment::Left);
    text(
        fb,
        &format!("{scale:.0} W"),
        right,
        top,
        &FONT_4X6,
        DIM,
        Alignment::Right,
    );
    let n = history.len();
    if n == 0 {
        return;
    }
    let span = (right - left) as f64;
    let xy = |i: usize, w: f64| {
        let x = if n == 1 {
            right as f64
        } else {
            left as f64 + span * i as f64 / (n - 1) as f64
        };
        let y = bottom as f64 - 1.0 - (w.clamp(0.0, scale) / scale) * (height - 8) as f64;
        (x.round() as i32, y.round() as i32)
    };
    // Area under the line: each column filled up to the interpolated value.
    if n > 1 {
        for col in left..=right {
            let pos = (col - left) as f64 / span * (n - 1) as f64;
            let i = (pos.floor() as usize).min(n - 2);
            let w = history[i] + (history[i + 1] - history[i]) * (pos - i as f64);
            line(fb, (col, xy(0, w).1 + 1), (col, bottom - 1), TEAL_DARK, 1);
        }
    }
    for i in 1..n {
        line(fb, xy(i - 1, history[i - 1]), xy(i, history[i]), TEAL, 1);
    }
    if n == 1 {
        let (x, y) = xy(0, history[0]);
        line(fb, (x - 2, y), (x, y), TEAL, 1);
    }
}

fn live(fb: &mut Framebuffer, s: &MeterState, stale_s: Option<u64>, now: u64) {
    let short: String = s.device_id.chars().take(8).collect();
    header(fb, &short, now);

    // The power figure.
    let watts = s.power_w.or(s.window_w);
    let (figure, over) = watts.map(format_power).unwrap_or(("--".into(), false));
    let colour = if stale_s.is_some() { DIM } else { TEXT };
    text(fb, &figure, 4, 16, &PROFONT_24_POINT, colour, Alignment::Left);
    let unit_x = 4 + 16 * figure.len() as i32 + 3;
    text(fb, "W", unit_x, 27, &PROFONT_14_POINT, DIM, Alignment::Left);
    if over {
        text(
            fb,
            "+",
            unit_x + 11,
            18,
            &PROFONT_12_POINT,
            AMBER,
            Alignment::Left,
        );
    }

    // Link and last window.
    let (dot, label) = match s.link.status {
        LinkStatus::Online => (GREEN, "ONLINE"),
        LinkStatus::Offline => (AMBER, "OFFLINE"),
        LinkStatus::Unknown => (DIM, "LINK ?"),
        LinkStatus::Untrusted => (RED, "TLS ERR"),
    };
    let _ = Circle::new(Point::new(103, 18), 7)
        .into_styled(PrimitiveStyle::with_fill(dot))
        .draw(fb);
    text(fb, label, 113, 17, &FONT_6X10, TEXT, Alignment::Left);
    if let Some(w) = s.window_w {
        text(
            fb,
            &format!("{}s", s.window_s),
            103,
            29,
            &FONT_6X10,
            DIM,
            Alignment::Left,
        );
        text(
            fb,
            &format!("{}W", format_power(w).0),
            156,
            29,
            &FONT_6X10,
            TEXT,
            Alignment::Right,
        );
    }
    if s.link.outbox_depth > 0 && s.link.status != LinkStatus::Online {
        text(
            fb,
            &format!("{} queued", s.link.outbox_depth),
            156,
            39,
            &FONT_6X10,
            AMBER,
            Alignment::Right,
        );
    }

    // Level bar.
    let history_max = s.history_w.iter().copied().fold(0.0, f64::max);
    let scale = scale_for(history_max.max(watts.unwrap_or(0.0)));
    fill(fb, 4, 50, 152, 6, TRACK);
    if let Some(w) = watts {
        let width = ((w.max(0.0) / scale).min(1.0) * 152.0).round() as u32;
        fill(
            fb,
            4,
            50,
            width,
            6,
            if stale_s.is_some() { DIM } else { level_colour(w) },
        );
    }

    sparkline(fb, &s.history_w, scale, 60, 38);
    line(fb, (4, 101), (156, 101), TRACK, 1);

    // Rewards and energy.
    let amount = |x: Option<f64>| x.map(format_amount).unwrap_or_else(|| "--".into());
    text(fb, "RATE", 4, 105, &FONT_6X10, DIM, Alignment::Left);
    text(
        fb,
        &format!("{}/h", amount(s.rewards.rate_per_h)),
        32,
        105,
        &FONT_6X10,
        TEXT,
        Alignment::Left,
    );
    text(fb, "BAL", 80, 105, &FONT_6X10, DIM, Alignment::Left);
    // The proven balance when there is one; what was earned since its seal
    // is shown apart, as pending, not added to the proven figure.
    text(
        fb,
        &amount(s.rewards.proven.or(s.rewards.balance)),
        142,
        105,
        &FONT_6X10,
        TEXT,
        Alignment::Right,
    );
    proof_mark(fb, s.rewards.proof, 146, 105);
    if let Some(p) = s.rewards.pending.filter(|p| *p > 0.0) {
        text(
            fb,
            &format!("+{} pending", format_amount(p)),
            142,
            117,
            &FONT_4X6,
            DIM,
            Alignment::Right,
        );
    }
    text(fb, "TODAY", 4, 117, &FONT_6X10, DIM, Alignment::Left);
    text(
        fb,
        &format!("{} Wh", format_amount(s.energy_today_wh)),
        38,
        117,
        &FONT_6X10,
        TEXT,
        Alignment::Left,
    );
    if s.sensor.simulated {
        text(fb, "SIM", 156, 118, &FONT_4X6, DIM, Alignment::Right);
    }

    if let Some(age) = stale_s {
        fill(fb, 12, 66, 136, 24, AMBER);
        let age = if age < 3600 {
            format!("{age} s")
        } else {
            format!("{} min", age / 60)
        };
        text(
            fb,
            &format!("STALE {age}"),
            80,
            70,
            &PROFONT_14_POINT,
            BG,
            Alignment::Center,
        );
    }
}

fn no_data(fb: &mut Framebuffer, reason: &str, now: u64) {
    header(fb, "--------", now);
    text(fb, "NO DATA", 80, 38, &PROFONT_18_POINT, AMBER, Alignment::Center);
    text(fb, reason, 80, 66, &FONT_6X10, TEXT, Alignment::Center);
    text(
        fb,
        "waiting for power-meter",
        80,
        80,
        &FONT_6X10,
        DIM,
        Alignment::Center,
    );
    fill(fb, 4, 100, 152, 1, TRACK);
}

/// Draws `screen` as it should look at Unix time `now`.
pub fn draw(fb: &mut Framebuffer, screen: &Screen, now: u64) {
    let _ = fb.clear(BG);
    match screen {
        Screen::Live { state, stale_s } => live(fb, state, *stale_s, now),
        Screen::NoData { reason } => no_data(fb, reason, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_colours_follow_the_reward_tiers() {
        assert_eq!(level_colour(2.9), GREEN);
        assert_eq!(level_colour(4.0), AMBER);
        assert_eq!(level_colour(12.0), RED);
    }

    #[test]
    fn scales_are_round_and_cover_the_value() {
        assert_eq!(scale_for(0.0), 5.0);
        assert_eq!(scale_for(12.0), 20.0);
        assert_eq!(scale_for(9999.0), 10_000.0);
    }
}
