//! Provisioning commands: create a device key, show its identity, sign a reading
//! by hand. The secret key is never printed; only the public key and device id are.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use wattstream_sdk::{DeviceKey, load_key, save_key};

fn print_identity(key: &DeviceKey, out: &mut impl Write) -> Result<()> {
    writeln!(out, "device_id: {}", key.device_id())?;
    writeln!(out, "public_key: {}", key.public_key().to_hex())?;
    Ok(())
}

pub fn keygen(path: &Path, force: bool, out: &mut impl Write) -> Result<()> {
    let key = DeviceKey::generate();
    save_key(path, &key, force)
        .with_context(|| "could not write the device key (use --force to replace one)")?;
    tracing::info!(path = %path.display(), "wrote a new device key (mode 0600)");
    print_identity(&key, out)
}

pub fn id(path: &Path, out: &mut impl Write) -> Result<()> {
    print_identity(&load_key(path)?, out)
}

pub fn sign(path: &Path, input: &mut impl Read, out: &mut impl Write) -> Result<()> {
    let key = load_key(path)?;
    let mut data = String::new();
    input
        .read_to_string(&mut data)
        .context("stdin is not UTF-8 text")?;
    let data = data.trim();
    if data.is_empty() {
        bail!(
            "no input: pipe a data object such as {{\"sensor_reading\":4.2,\"timestamp\":1795514493}} on stdin"
        );
    }
    let body = key.sign_data(data).context("invalid reading")?;
    writeln!(out, "{body}")?;
    Ok(())
}
