//! Five-second windows (any length, aligned to wall-clock multiples of it) from
//! samples taken on a fixed tick. Energy is the trapezoidal integral of power
//! over the window; a sample exactly on a boundary ends one window and starts the
//! next. Short gaps (missed samples) are bridged by the trapezoid; a gap longer
//! than `max_gap_ms` is not invented: the window covers only the time it has.

use wattstream_sdk::Reading;

use crate::sensor::Sample;

/// A finished window, ready to be signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Window start and end, Unix milliseconds.
    pub start_ms: u64,
    pub end_ms: u64,
    /// Milliseconds of the window that samples cover.
    pub covered_ms: u64,
    pub energy_wh: f64,
    /// Time-weighted averages over the covered time.
    pub avg_w: f64,
    pub avg_v: f64,
    pub avg_a: f64,
    pub min_w: f64,
    pub max_w: f64,
    pub samples: u32,
    pub missed: u32,
}

impl Window {
    /// The envelope's `data` for this window (without `seq`, which the outbox assigns).
    pub fn reading(&self) -> Reading {
        let round = |x: f64, digits: i32| {
            let f = 10f64.powi(digits);
            (x * f).round() / f
        };
        let mut r = Reading::new(round(self.avg_w, 4), self.end_ms / 1000);
        r.window_s = Some(((self.end_ms - self.start_ms) / 1000) as u32);
        r.energy_wh = Some(round(self.energy_wh, 7));
        r.min_w = Some(round(self.min_w, 4));
        r.max_w = Some(round(self.max_w, 4));
        r.voltage_v = Some(round(self.avg_v, 3));
        r.current_a = Some(round(self.avg_a, 5));
        r.samples = Some(self.samples);
        r.missed = Some(self.missed);
        r
    }
}

#[derive(Debug, Clone, Copy)]
struct Point {
    t_ms: u64,
    s: Sample,
}

/// Builds windows from `(time, sample)` pairs given in increasing time order.
#[derive(Debug)]
pub struct Windower {
    window_ms: u64,
    sample_ms: u64,
    max_gap_ms: u64,
    current: Option<Acc>,
    last: Option<Point>,
}

#[derive(Debug)]
struct Acc {
    start_ms: u64,
    covered_ms: u64,
    joules: f64,
    volt_ms: f64,
    amp_ms: f64,
    min_w: f64,
    max_w: f64,
    samples: u32,
    /// The latest sample seen, for a window too short to integrate.
    latest: Option<Sample>,
}

impl Acc {
    fn new(start_ms: u64) -> Self {
        Acc {
            start_ms,
            covered_ms: 0,
            joules: 0.0,
            volt_ms: 0.0,
            amp_ms: 0.0,
            min_w: f64::INFINITY,
            max_w: f64::NEG_INFINITY,
            samples: 0,
            latest: None,
        }
    }

    fn see(&mut self, s: &Sample) {
        self.latest = Some(*s);
        self.min_w = self.min_w.min(s.watts);
        self.max_w = self.max_w.max(s.watts);
    }

    fn segment(&mut self, a: &Point, b: &Point) {
        let dt = b.t_ms - a.t_ms;
        self.covered_ms += dt;
        self.joules += (a.s.watts + b.s.watts) / 2.0 * dt as f64 / 1000.0;
        self.volt_ms += (a.s.volts + b.s.volts) / 2.0 * dt as f64;
        self.amp_ms += (a.s.amps + b.s.amps) / 2.0 * dt as f64;
    }
}

fn lerp(a: &Point, b: &Point, t_ms: u64) -> Point {
    let f = (t_ms - a.t_ms) as f64 / (b.t_ms - a.t_ms) as f64;
    let mix = |x: f64, y: f64| x + (y - x) * f;
    Point {
        t_ms,
        s: Sample {
            volts: mix(a.s.volts, b.s.volts),
            amps: mix(a.s.amps, b.s.amps),
            watts: mix(a.s.watts, b.s.watts),
        },
    }
}

impl Windower {
    /// Windows of `window_ms`, samples expected every `sample_ms`; gaps up to
    /// `max_gap_ms` are bridged.
    pub fn new(window_ms: u64, sample_ms: u64, max_gap_ms: u64) -> Self {
        assert!(window_ms > 0 && sample_ms > 0);
        Windower {
            window_ms,
            sample_ms,
            max_gap_ms,
            current: None,
            last: None,
        }
    }

    fn window_start(&self, t_ms: u64) -> u64 {
        t_ms - t_ms % self.window_ms
    }

    fn finish(&self, acc: Acc) -> Option<Window> {
        if acc.samples == 0 {
            return None;
        }
        let expected = (self.window_ms / self.sample_ms) as u32;
        let covered_s = acc.covered_ms as f64 / 1000.0;
        let (avg_w, avg_v, avg_a) = if acc.covered_ms > 0 {
            (
                acc.joules / covered_s,
                acc.volt_ms / acc.covered_ms as f64,
                acc.amp_ms / acc.covered_ms as f64,
            )
        } else {
            // A single sample and no time covered: report that sample.
            let s = acc.latest.expect("a window with samples has seen one");
            (s.watts, s.volts, s.amps)
        };
        Some(Window {
            start_ms: acc.start_ms,
            end_ms: acc.start_ms + self.window_ms,
            covered_ms: acc.covered_ms,
            energy_wh: acc.joules / 3600.0,
            avg_w,
            avg_v,
            avg_a,
            min_w: acc.min_w,
            max_w: acc.max_w,
            samples: acc.samples,
            missed: expected.saturating_sub(acc.samples),
        })
    }

    /// Adds a sample taken at `t_ms`; returns the windows it completes.
    pub fn push(&mut self, t_ms: u64, s: Sample) -> Vec<Window> {
        let mut done = Vec::new();
        let point = Point { t_ms, s };
        let Some(mut acc) = self.current.take() else {
            let mut acc = Acc::new(self.window_start(t_ms));
            acc.see(&s);
            acc.samples = 1;
            self.current = Some(acc);
            self.last = Some(point);
            return done;
        };
        let mut last = self.last.expect("a window in progress has a last point");
        if t_ms <= last.t_ms {
            // Out of order or repeated: ignore rather than corrupt the integral.
            self.current = Some(acc);
            return done;
        }
        let bridged = t_ms - last.t_ms <= self.max_gap_ms;
        loop {
            let end = acc.start_ms + self.window_ms;
            if t_ms < end {
                if bridged {
                    acc.segment(&last, &point);
                }
                acc.see(&s);
                acc.samples += 1;
                break;
            }
            if !bridged {
                // Too long a gap: close what we have, start fresh at this sample.
                done.extend(self.finish(acc));
                acc = Acc::new(self.window_start(t_ms));
                acc.see(&s);
                acc.samples = 1;
                break;
            }
            // The boundary lies on or before this sample: integrate up to it.
            let at_end = if t_ms == end {
                point
            } else {
                lerp(&last, &point, end)
            };
            acc.segment(&last, &at_end);
            if t_ms == end {
                acc.see(&s);
            }
            done.extend(self.finish(acc));
            acc = Acc::new(end);
            acc.see(&at_end.s);
            last = at_end;
            if t_ms == end {
                acc.samples = 1;
                break;
            }
        }
        self.current = Some(acc);
        self.last = Some(point);
        done
    }

    /// Closes the window in progress (at shutdown), covering only what it has.
    pub fn flush(&mut self) -> Option<Window> {
        self.last = None;
        self.current.take().and_then(|acc| self.finish(acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(w: f64) -> Sample {
        Sample {
            volts: 12.0,
            amps: w / 12.0,
            watts: w,
        }
    }

    /// P(t) = 6 + 4 sin(2πt/7) W, t in seconds; its exact integral.
    fn p(t: f64) -> f64 {
        6.0 + 4.0 * (2.0 * std::f64::consts::PI * t / 7.0).sin()
    }
    fn energy_j(a: f64, b: f64) -> f64 {
        let k = 2.0 * std::f64::consts::PI / 7.0;
        6.0 * (b - a) - 4.0 / k * ((k * b).cos() - (k * a).cos())
    }

    #[test]
    fn energy_matches_the_analytic_integral_within_0_1_percent() {
        let mut w = Windower::new(5000, 100, 1000);
        let t0 = 1_795_514_490_000u64; // a multiple of 5 s
        let mut windows = Vec::new();
        for i in 0..=600u64 {
            let t = t0 + i * 100;
            windows.extend(w.push(t, sample(p((t - t0) as f64 / 1000.0))));
        }
        assert_eq!(windows.len(), 12);
        for win in &windows {
            let (a, b) = (
                (win.start_ms - t0) as f64 / 1000.0,
                (win.end_ms - t0) as f64 / 1000.0,
            );
            let exact_wh = energy_j(a, b) / 3600.0;
            let err = (win.energy_wh - exact_wh).abs() / exact_wh;
            assert!(
                err <= 0.001,
                "window {a}-{b}: {} Wh vs {exact_wh} Wh ({:.4} %)",
                win.energy_wh,
                err * 100.0
            );
            assert!((win.avg_w - exact_wh * 3600.0 / 5.0).abs() / win.avg_w <= 0.001);
            assert_eq!(win.covered_ms, 5000);
            assert_eq!((win.samples, win.missed), (50, 0));
        }
    }

    #[test]
    fn windows_align_to_wall_clock_multiples() {
        let mut w = Windower::new(5000, 100, 1000);
        // Start mid-window at ...493.2 s.
        let t0 = 1_795_514_493_200u64;
        let mut windows = Vec::new();
        for i in 0..200u64 {
            windows.extend(w.push(t0 + i * 100, sample(4.0)));
        }
        assert!(windows.len() >= 3);
        for win in &windows {
            assert_eq!(win.start_ms % 5000, 0);
            assert_eq!(win.end_ms - win.start_ms, 5000);
            assert_eq!(win.reading().timestamp, win.end_ms / 1000);
        }
        // The first window only covers from the first sample: 1.8 s of it.
        assert_eq!(windows[0].covered_ms, 1800);
        assert!((windows[0].avg_w - 4.0).abs() < 1e-9);
        assert!((windows[1].energy_wh - 4.0 * 5.0 / 3600.0).abs() < 1e-12);
    }

    #[test]
    fn short_gaps_are_bridged_and_counted_long_gaps_are_not_invented() {
        let mut w = Windower::new(5000, 100, 1000);
        let t0 = 1_000_000u64;
        let mut out = Vec::new();
        for i in 0..=50u64 {
            if (10..15).contains(&i) {
                continue; // five missed samples
            }
            out.extend(w.push(t0 + i * 100, sample(2.0)));
        }
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].samples, out[0].missed), (45, 5));
        assert!((out[0].energy_wh - 2.0 * 5.0 / 3600.0).abs() < 1e-12, "bridged");

        // A 20 s silence: the windows in it are not made up.
        let out = w.push(t0 + 25_000, sample(2.0));
        assert_eq!(out.len(), 1, "only the window in progress closes");
        assert_eq!(out[0].covered_ms, 0);
        let later = w.push(t0 + 30_000, sample(2.0));
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].start_ms, t0 + 25_000);
    }

    #[test]
    fn a_boundary_sample_ends_one_window_and_starts_the_next() {
        let mut w = Windower::new(1000, 500, 1000);
        assert!(w.push(0, sample(1.0)).is_empty());
        assert!(w.push(500, sample(1.0)).is_empty());
        let out = w.push(1000, sample(3.0));
        assert_eq!(out.len(), 1);
        assert!(
            (out[0].energy_wh * 3600.0 - (0.5 + 1.0)).abs() < 1e-12,
            "{}",
            out[0].energy_wh * 3600.0
        );
        assert_eq!(out[0].max_w, 3.0);
        let out = w.push(2000, sample(3.0));
        assert!((out[0].energy_wh * 3600.0 - 3.0).abs() < 1e-12);
        let last = w.flush().unwrap();
        assert_eq!((last.samples, last.covered_ms, last.energy_wh), (1, 0, 0.0));
        assert_eq!(
            (last.avg_w, last.avg_v),
            (3.0, 12.0),
            "a lone sample reports itself"
        );
    }
}
