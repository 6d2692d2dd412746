//! An emulated INA219 on an emulated I2C bus: the register file of the real chip
//! (configuration, shunt voltage, bus voltage, power, current, calibration) with
//! its LSBs, ranges and integer conversion rules, behind the embedded-hal 1.0
//! `I2c` trait. `--sim` puts this where `/dev/i2c-1` would be, so the `ina219`
//! driver runs exactly the calls it makes on hardware.
//!
//! A conversion happens each time the bus-voltage register is read (the driver
//! reads it first in every measurement), from the load model at that instant.
//! Reading the power register clears the conversion-ready flag, as on the chip.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};

use super::load::NoisyLoad;

/// Configuration register value after power-on or reset.
pub const CONFIG_RESET: u16 = 0x399F;
const REG_CONFIG: u8 = 0;
const REG_SHUNT: u8 = 1;
const REG_BUS: u8 = 2;
const REG_POWER: u8 = 3;
const REG_CURRENT: u8 = 4;
const REG_CALIBRATION: u8 = 5;

/// An I2C error from the emulated bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusError(pub ErrorKind);

impl embedded_hal::i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "emulated I2C bus: {:?}", self.0)
    }
}

impl std::error::Error for BusError {}

/// The emulated chip and bus.
pub struct EmulatedIna219 {
    address: u8,
    shunt_ohms: f64,
    regs: [u16; 6],
    pointer: u8,
    load: NoisyLoad,
    clock: Box<dyn FnMut() -> f64 + Send>,
    faults: Arc<AtomicU32>,
}

impl EmulatedIna219 {
    /// A chip at `address` with a `shunt_ohms` shunt, measuring `load`; `clock`
    /// gives the time in seconds at each conversion.
    pub fn new(address: u8, shunt_ohms: f64, load: NoisyLoad, clock: Box<dyn FnMut() -> f64 + Send>) -> Self {
        let mut chip = EmulatedIna219 {
            address,
            shunt_ohms,
            regs: [0; 6],
            pointer: 0,
            load,
            clock,
            faults: Arc::default(),
        };
        chip.reset();
        chip
    }

    /// A handle to make the next N bus transactions fail (tests of error handling).
    pub fn fault_injector(&self) -> Arc<AtomicU32> {
        self.faults.clone()
    }

    /// The raw register file (for tests).
    pub fn registers(&self) -> [u16; 6] {
        self.regs
    }

    fn reset(&mut self) {
        self.regs = [CONFIG_RESET, 0, 0, 0, 0, 0];
    }

    /// Shunt full-scale range from the PGA bits, in 10 µV units.
    fn shunt_limit(&self) -> i32 {
        4000 << ((self.regs[REG_CONFIG as usize] >> 11) & 0b11)
    }

    fn convert(&mut self) {
        let t = (self.clock)();
        let load = self.load.sample(t);
        let limit = self.shunt_limit();
        let shunt = ((load.amps * self.shunt_ohms) / 10e-6)
            .round()
            .clamp(-limit as f64, limit as f64) as i32;
        let bus_4mv = (load.volts / 4e-3).round().clamp(0.0, 8191.0) as u32;
        let cal = self.regs[REG_CALIBRATION as usize] as i64;
        let current = (shunt as i64 * cal) / 4096;
        let power = (current.unsigned_abs() * bus_4mv as u64) / 5000;
        let overflow = !(i16::MIN as i64..=i16::MAX as i64).contains(&current) || power > u16::MAX as u64;
        self.regs[REG_SHUNT as usize] = shunt as i16 as u16;
        self.regs[REG_BUS as usize] = ((bus_4mv as u16) << 3) | 0b10 | overflow as u16;
        if !overflow {
            self.regs[REG_CURRENT as usize] = current as i16 as u16;
            self.regs[REG_POWER as usize] = power as u16;
        }
    }

    fn read_register(&mut self, reg: u8) -> u16 {
        match reg {
            REG_BUS => {
                self.convert();
                self.regs[REG_BUS as usize]
            }
            REG_POWER => {
                self.regs[REG_BUS as usize] &= !0b10;
                self.regs[REG_POWER as usize]
            }
            r => self.regs[r as usize],
        }
    }

    fn write_register(&mut self, reg: u8, value: u16) {
        match reg {
            REG_CONFIG if value & 0x8000 != 0 => self.reset(),
            REG_CONFIG => self.regs[0] = value,
            REG_CALIBRATION => self.regs[5] = value & 0xFFFE,
            _ => {} // shunt, bus, power and current are read-only
        }
    }
}

impl ErrorType for EmulatedIna219 {
    type Error = BusError;
}

impl I2c for EmulatedIna219 {
    fn transaction(&mut self, address: u8, operations: &mut [Operation<'_>]) -> Result<(), Self::Error> {
        if self
            .faults
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(BusError(ErrorKind::Bus));
        }
        if address != self.address {
            return Err(BusError(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)));
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => match bytes {
                    [reg] if *reg <= REG_CALIBRATION => self.pointer = *reg,
                    [reg, hi, lo] if *reg <= REG_CALIBRATION => {
                        self.pointer = *reg;
                        self.write_register(*reg, u16::from_be_bytes([*hi, *lo]));
                    }
                    _ => return Err(BusError(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data))),
                },
                Operation::Read(buf) => {
                    let value = self.read_register(self.pointer).to_be_bytes();
                    for (i, b) in buf.iter_mut().enumerate() {
                        *b = value[i % 2];
                    }
                }
            }
        }
        Ok(())
    }
}
