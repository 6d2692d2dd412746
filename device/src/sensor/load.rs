//! Load models for the simulated sensor: what the emulated INA219 "sees" at a
//! given instant. The demo board of the W3bstream power-meter demo (three
//! switchable pairs of 2 W LEDs at 12 V), a constant load, or a CSV profile; each
//! with optional measurement noise from a small seeded generator, so runs repeat.

use std::path::Path;

/// The electrical state at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Bus voltage, volts.
    pub volts: f64,
    /// Current through the shunt, amperes.
    pub amps: f64,
}

/// What drives the emulated chip.
#[derive(Debug, Clone)]
pub enum LoadModel {
    /// The demo board: 0, 4, 8 or 12 W at `volts`, stepping through
    /// 0 → 4 → 8 → 12 → 8 → 4 with `step_s` seconds per level.
    DemoBoard { volts: f64, step_s: f64 },
    /// A constant power draw.
    Constant { volts: f64, watts: f64 },
    /// A profile of `(seconds, watts)` points, linearly interpolated and repeated.
    Profile { volts: f64, points: Vec<(f64, f64)> },
}

/// Why a CSV profile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read load profile {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("load profile {path}, line {line}: {reason}")]
    Line {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("load profile {path} needs at least two points with increasing times")]
    TooShort { path: String },
}

impl LoadModel {
    /// Reads a CSV of `seconds,watts` lines (a header line and `#` comments are skipped).
    pub fn from_csv(path: &Path, volts: f64) -> Result<Self, ProfileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: name.clone(),
            source,
        })?;
        let mut points: Vec<(f64, f64)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty()
                || line.starts_with('#')
                || (i == 0 && line.chars().next().is_some_and(char::is_alphabetic))
            {
                continue;
            }
            let bad = |reason: &str| ProfileError::Line {
                path: name.clone(),
                line: i + 1,
                reason: reason.to_string(),
            };
            let mut fields = line.split(',').map(str::trim);
            let t: f64 = fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad("first field is not seconds"))?;
            let w: f64 = fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| bad("second field is not watts"))?;
            if !(t.is_finite() && w.is_finite() && w >= 0.0) {
                return Err(bad("values must be finite and watts >= 0"));
            }
            if points.last().is_some_and(|(pt, _)| *pt >= t) {
                return Err(bad("times must increase"));
            }
            points.push((t, w));
        }
        if points.len() < 2 {
            return Err(ProfileError::TooShort { path: name });
        }
        Ok(LoadModel::Profile { volts, points })
    }

    /// Power in watts at `t` seconds (any epoch).
    pub fn watts(&self, t: f64) -> f64 {
        match self {
            LoadModel::DemoBoard { step_s, .. } => {
                const LEVELS: [f64; 6] = [0.0, 4.0, 8.0, 12.0, 8.0, 4.0];
                LEVELS[((t / step_s).floor().rem_euclid(LEVELS.len() as f64)) as usize]
            }
            LoadModel::Constant { watts, .. } => *watts,
            LoadModel::Profile { points, .. } => {
                let (t0, t_end) = (points[0].0, points[points.len() - 1].0);
                let t = t0 + (t - t0).rem_euclid(t_end - t0);
                let i = points
                    .partition_point(|(pt, _)| *pt <= t)
                    .clamp(1, points.len() - 1);
                let ((ta, wa), (tb, wb)) = (points[i - 1], points[i]);
                wa + (wb - wa) * (t - ta) / (tb - ta)
            }
        }
    }

    /// The supply voltage.
    pub fn volts(&self) -> f64 {
        match self {
            LoadModel::DemoBoard { volts, .. }
            | LoadModel::Constant { volts, .. }
            | LoadModel::Profile { volts, .. } => *volts,
        }
    }

    /// Voltage and current at `t`.
    pub fn load(&self, t: f64) -> Load {
        let volts = self.volts();
        Load {
            volts,
            amps: self.watts(t) / volts,
        }
    }
}

/// xorshift64*: a tiny deterministic generator for noise and jitter.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Approximately normal with mean 0 and standard deviation 1 (Irwin–Hall, 12 terms).
    pub fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// A model with relative Gaussian noise on the current and voltage.
#[derive(Debug, Clone)]
pub struct NoisyLoad {
    pub model: LoadModel,
    /// Relative standard deviation (0.01 = 1 %).
    pub noise: f64,
    rng: Rng,
}

impl NoisyLoad {
    pub fn new(model: LoadModel, noise: f64, seed: u64) -> Self {
        NoisyLoad {
            model,
            noise,
            rng: Rng::new(seed),
        }
    }

    /// One noisy observation at `t`.
    pub fn sample(&mut self, t: f64) -> Load {
        let exact = self.model.load(t);
        if self.noise == 0.0 {
            return exact;
        }
        Load {
            volts: exact.volts * (1.0 + self.noise * 0.1 * self.rng.normal()),
            amps: (exact.amps * (1.0 + self.noise * self.rng.normal())).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_board_steps_through_its_levels() {
        let m = LoadModel::DemoBoard {
            volts: 12.0,
            step_s: 10.0,
        };
        let levels: Vec<f64> = (0..7).map(|i| m.watts(i as f64 * 10.0 + 1.0)).collect();
        assert_eq!(levels, [0.0, 4.0, 8.0, 12.0, 8.0, 4.0, 0.0]);
        assert!((m.load(15.0).amps - 4.0 / 12.0).abs() < 1e-12);
    }

    #[test]
    fn profiles_interpolate_and_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        std::fs::write(&path, "seconds,watts\n0,0\n10,10\n20,0\n").unwrap();
        let m = LoadModel::from_csv(&path, 12.0).unwrap();
        assert!((m.watts(5.0) - 5.0).abs() < 1e-12);
        assert!((m.watts(15.0) - 5.0).abs() < 1e-12);
        assert!((m.watts(25.0) - 5.0).abs() < 1e-12, "repeats after 20 s");
        std::fs::write(&path, "0,1\n5,-2\n").unwrap();
        let e = LoadModel::from_csv(&path, 12.0).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn noise_is_repeatable_and_centred() {
        let model = LoadModel::Constant {
            volts: 12.0,
            watts: 6.0,
        };
        let mut a = NoisyLoad::new(model.clone(), 0.02, 7);
        let mut b = NoisyLoad::new(model, 0.02, 7);
        let xs: Vec<f64> = (0..2000).map(|i| a.sample(i as f64).amps).collect();
        let ys: Vec<f64> = (0..2000).map(|i| b.sample(i as f64).amps).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.002, "mean {mean}");
    }
}
