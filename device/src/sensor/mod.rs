//! The INA219 power sensor through the `ina219` driver crate, generic over the
//! embedded-hal 1.0 I2C bus: `linux-embedded-hal`'s `I2cdev` on a Pi, the
//! [`emulator`] under `--sim`. Everything above the bus is the same code.

pub mod emulator;
pub mod load;

use embedded_hal::i2c::I2c;
use ina219::SyncIna219;
use ina219::address::Address;
use ina219::calibration::{IntCalibration, MicroAmpere};
use ina219::configuration::{BusVoltageRange, Configuration, ShuntVoltageRange};

/// One reading of the chip.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Bus voltage, volts.
    pub volts: f64,
    /// Current, amperes.
    pub amps: f64,
    /// Power from the chip's power register, watts.
    pub watts: f64,
}

/// How the chip is wired and calibrated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// 7-bit I2C address (0x40..=0x4F).
    pub address: u8,
    /// Shunt resistance, ohms.
    pub shunt_ohms: f64,
    /// Largest current to measure, amperes.
    pub max_current_a: f64,
    /// Bus voltage range, 16 or 32 V.
    pub bus_range_v: u8,
}

impl Default for Calibration {
    /// The Adafruit INA219 breakout: 0.1 Ω shunt, up to 3.2 A, 32 V range.
    fn default() -> Self {
        Calibration {
            address: 0x40,
            shunt_ohms: 0.1,
            max_current_a: 3.2,
            bus_range_v: 32,
        }
    }
}

/// Why the sensor could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("sensor calibration: {0}")]
    Calibration(String),
    #[error("INA219 at 0x{address:02x} did not initialise: {reason}")]
    Init { address: u8, reason: String },
    #[error("INA219 read failed: {0}")]
    Read(String),
}

/// The smallest 1-2-5 series value (10^k × 1, 2 or 5) that is >= `x`.
fn nice_round_up(x: f64) -> f64 {
    let exp = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * exp)
        .find(|v| *v >= x * (1.0 - 1e-12))
        .unwrap_or(10.0 * exp)
}

impl Calibration {
    /// The current LSB (µA): the datasheet's minimum, max current / 2^15, rounded
    /// up to a 1-2-5 value so readings are round numbers.
    pub fn current_lsb_ua(&self) -> i64 {
        nice_round_up(self.max_current_a * 1e6 / 32768.0).round() as i64
    }

    /// The driver's calibration; its register value is
    /// `trunc(0.04096 / (current_lsb × shunt))`, 4096 for the defaults.
    pub fn driver_calibration(&self) -> Result<IntCalibration, SensorError> {
        if !(self.shunt_ohms > 0.0 && self.max_current_a > 0.0) {
            return Err(SensorError::Calibration(
                "shunt_ohms and max_current_a must be > 0".into(),
            ));
        }
        let shunt_uohm = (self.shunt_ohms * 1e6).round() as u32;
        IntCalibration::new(MicroAmpere(self.current_lsb_ua()), shunt_uohm).ok_or_else(|| {
            SensorError::Calibration(format!(
                "no valid calibration for a {} Ω shunt and {} A maximum",
                self.shunt_ohms, self.max_current_a
            ))
        })
    }

    /// The chip configuration: the bus range asked for, and the smallest shunt
    /// range (PGA gain) that holds `max_current_a × shunt_ohms`.
    pub fn configuration(&self) -> Result<Configuration, SensorError> {
        let bus_voltage_range = match self.bus_range_v {
            16 => BusVoltageRange::Fsr16v,
            32 => BusVoltageRange::Fsr32v,
            v => {
                return Err(SensorError::Calibration(format!(
                    "bus_range_v must be 16 or 32, got {v}"
                )));
            }
        };
        let shunt_mv = (self.max_current_a * self.shunt_ohms * 1e6).round() / 1000.0;
        let shunt_voltage_range = match shunt_mv {
            v if v <= 40.0 => ShuntVoltageRange::Fsr40mv,
            v if v <= 80.0 => ShuntVoltageRange::Fsr80mv,
            v if v <= 160.0 => ShuntVoltageRange::Fsr160mv,
            v if v <= 320.0 => ShuntVoltageRange::Fsr320mv,
            v => {
                return Err(SensorError::Calibration(format!(
                    "max_current_a × shunt_ohms = {v:.0} mV exceeds the INA219's 320 mV shunt range"
                )));
            }
        };
        Ok(Configuration {
            bus_voltage_range,
            shunt_voltage_range,
            ..Configuration::default()
        })
    }
}

/// An initialised, calibrated INA219.
pub struct Sensor<I: I2c> {
    chip: SyncIna219<I, IntCalibration>,
}

impl<I: I2c> Sensor<I>
where
    I::Error: std::fmt::Debug,
{
    /// Resets the chip, checks its reset state, writes the calibration and configuration.
    pub fn new(i2c: I, cal: &Calibration) -> Result<Self, SensorError> {
        let address = Address::from_byte(cal.address).map_err(|_| {
            SensorError::Calibration(format!(
                "I2C address 0x{:02x} is not an INA219 address (0x40..=0x4f)",
                cal.address
            ))
        })?;
        let calibration = cal.driver_calibration()?;
        let config = cal.configuration()?;
        let init = |reason: String| SensorError::Init {
            address: cal.address,
            reason,
        };
        let mut chip = SyncIna219::new_calibrated(i2c, address, calibration)
            .map_err(|e| init(format!("{:?}", e.reason)))?;
        chip.set_configuration(config)
            .map_err(|e| init(format!("{e:?}")))?;
        Ok(Sensor { chip })
    }

    /// One measurement; `None` when the chip has no new conversion yet.
    pub fn read(&mut self) -> Result<Option<Sample>, SensorError> {
        let m = self
            .chip
            .next_measurement()
            .map_err(|e| SensorError::Read(format!("{e:?}")))?;
        Ok(m.map(|m| Sample {
            volts: m.bus_voltage.voltage_mv() as f64 / 1000.0,
            amps: m.current.0 as f64 / 1e6,
            watts: m.power.0 as f64 / 1e6,
        }))
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.chip.destroy()
    }
}

#[cfg(test)]
mod tests {
    use super::emulator::EmulatedIna219;
    use super::load::{LoadModel, NoisyLoad};
    use super::*;

    fn chip(model: LoadModel, t: f64) -> EmulatedIna219 {
        EmulatedIna219::new(0x40, 0.1, NoisyLoad::new(model, 0.0, 1), Box::new(move || t))
    }

    #[test]
    fn default_calibration_is_the_breakouts_4096() {
        let cal = Calibration::default();
        assert_eq!(cal.current_lsb_ua(), 100);
        let sensor = Sensor::new(
            chip(
                LoadModel::Constant {
                    volts: 12.0,
                    watts: 1.0,
                },
                0.0,
            ),
            &cal,
        )
        .unwrap();
        let regs = sensor.release().registers();
        assert_eq!(regs[5], 4096, "calibration register");
        assert_eq!(regs[0] & 0x1800, 0x1800, "PGA /8 for 320 mV");
    }

    #[test]
    fn readings_are_within_one_lsb_of_the_model() {
        let cal = Calibration::default();
        // One LSB, with room for floating-point representation only.
        let (current_lsb, power_lsb) = (100e-6 * (1.0 + 1e-9), 20.0 * 100e-6 * (1.0 + 1e-9));
        for watts in [0.0, 0.25, 1.0, 3.3, 4.0, 8.0, 12.0, 19.7, 30.0] {
            for volts in [5.0, 12.0, 24.0] {
                let model = LoadModel::Constant { volts, watts };
                let amps = watts / volts;
                if amps > cal.max_current_a {
                    continue;
                }
                let mut sensor = Sensor::new(chip(model, 0.0), &cal).unwrap();
                let s = sensor.read().unwrap().expect("conversion ready");
                assert!(
                    (s.amps - amps).abs() <= current_lsb,
                    "{watts} W at {volts} V: current {} vs {amps}",
                    s.amps
                );
                assert!(
                    (s.watts - watts).abs() <= power_lsb,
                    "{watts} W at {volts} V: power {}",
                    s.watts
                );
                assert!((s.volts - volts).abs() <= 0.004);
            }
        }
    }

    #[test]
    fn a_missing_chip_is_an_init_error() {
        let bus = EmulatedIna219::new(
            0x41,
            0.1,
            NoisyLoad::new(
                LoadModel::Constant {
                    volts: 12.0,
                    watts: 1.0,
                },
                0.0,
                1,
            ),
            Box::new(|| 0.0),
        );
        let err = Sensor::new(bus, &Calibration::default()).err().unwrap();
        assert!(err.to_string().contains("0x40"), "{err}");
    }

    #[test]
    fn bus_faults_are_read_errors_not_panics() {
        let bus = chip(
            LoadModel::Constant {
                volts: 12.0,
                watts: 6.0,
            },
            0.0,
        );
        let faults = bus.fault_injector();
        let mut sensor = Sensor::new(bus, &Calibration::default()).unwrap();
        faults.store(1, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(sensor.read(), Err(SensorError::Read(_))));
        assert!(sensor.read().unwrap().is_some(), "the next read works again");
    }

    #[test]
    fn bad_calibrations_are_refused_with_a_reason() {
        let too_much = Calibration {
            max_current_a: 10.0,
            ..Calibration::default()
        };
        assert!(
            too_much
                .configuration()
                .unwrap_err()
                .to_string()
                .contains("320 mV")
        );
        let bad_range = Calibration {
            bus_range_v: 20,
            ..Calibration::default()
        };
        assert!(
            bad_range
                .configuration()
                .unwrap_err()
                .to_string()
                .contains("16 or 32")
        );
    }
}
