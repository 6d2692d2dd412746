//! Provisioning commands: create a device key, install a maker's certificate
//! beside it, show its identity, sign a reading by hand, and make a binding
//! request for the owner's wallet to sign. The secret key is never printed;
//! only the public key and device id are.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use wattstream_sdk::binding::{ClaimRequest, MakerCertificate};
use wattstream_sdk::{DeviceKey, load_key, save_key};

/// Where a key's maker certificate is kept: beside it, `NAME.maker-cert.json`.
pub fn maker_cert_path(key: &Path) -> std::path::PathBuf {
    key.with_extension("maker-cert.json")
}

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

/// Installs a maker's certificate beside the key at `path` (creating the key
/// first when there is none). The certificate must be for this key.
pub fn install_maker_cert(path: &Path, cert: &Path, force: bool, out: &mut impl Write) -> Result<()> {
    let key = if path.exists() && !force {
        load_key(path)?
    } else {
        let key = DeviceKey::generate();
        save_key(path, &key, force)
            .with_context(|| "could not write the device key (use --force to replace one)")?;
        key
    };
    let text = std::fs::read_to_string(cert).with_context(|| format!("cannot read {}", cert.display()))?;
    let parsed: MakerCertificate = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a maker certificate", cert.display()))?;
    parsed.verify(key.public_key()).with_context(|| {
        format!(
            "{} does not certify this device's key {} (it names {})",
            cert.display(),
            key.public_key().to_hex(),
            parsed.device_public_key
        )
    })?;
    let dest = maker_cert_path(path);
    std::fs::write(&dest, serde_json::to_string_pretty(&parsed)? + "\n")
        .with_context(|| format!("cannot write {}", dest.display()))?;
    writeln!(out, "maker_certificate: {}", dest.display())?;
    print_identity(&key, out)
}

/// Prints a binding request (JSON) for `owner`, signed by the device key and
/// carrying the maker certificate installed beside it, if any.
pub fn bind(path: &Path, owner: &str, chain_id: u64, out: &mut impl Write) -> Result<()> {
    let key = load_key(path)?;
    let cert_path = maker_cert_path(path);
    let cert = match std::fs::read_to_string(&cert_path) {
        Ok(text) => Some(
            serde_json::from_str::<MakerCertificate>(&text)
                .with_context(|| format!("{} is not a maker certificate", cert_path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", cert_path.display())),
    };
    let request = ClaimRequest::new(&key, owner, chain_id, wattstream_sdk::time::unix_now(), cert)?;
    writeln!(out, "{}", serde_json::to_string_pretty(&request)?)?;
    Ok(())
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
