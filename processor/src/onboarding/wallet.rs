//! The owner's side of a binding: which EVM address signed a text with EIP-191
//! `personal_sign` (`"\x19Ethereum Signed Message:\n" + len + text`, Keccak-256,
//! secp256k1 recovery). alloy's primitives do the hashing and recovery; this
//! file only decides which signatures count.

use alloy_primitives::{Address, Signature};

/// Why an owner signature does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("the owner signature is not 65 bytes of hex (r‖s‖v)")]
    Malformed,
    #[error("the owner signature has a high s value (EIP-2); wallets sign with low s")]
    HighS,
    #[error("no address can be recovered from the owner signature")]
    Unrecoverable,
}

/// The address that signed `message` with `personal_sign`, lowercase `0x` hex.
pub fn signer(message: &str, signature: &str) -> Result<String, WalletError> {
    let hex = signature.trim();
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    let bytes = alloy_primitives::hex::decode(hex).map_err(|_| WalletError::Malformed)?;
    let array: [u8; 65] = bytes.try_into().map_err(|_| WalletError::Malformed)?;
    // `from_raw_array` reads v as 27/28 or 0/1, as wallets write it.
    let sig = Signature::from_raw_array(&array).map_err(|_| WalletError::Malformed)?;
    if sig.normalize_s().is_some() {
        return Err(WalletError::HighS);
    }
    let address: Address = sig
        .recover_address_from_msg(message.as_bytes())
        .map_err(|_| WalletError::Unrecoverable)?;
    Ok(format!("{address:#x}"))
}

/// `address` written with its EIP-55 checksum, for people to read.
pub fn checksummed(address: &str) -> String {
    address
        .parse::<Address>()
        .map(|a| a.to_checksum(None))
        .unwrap_or_else(|_| address.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_and_high_s_signatures_are_refused() {
        assert_eq!(signer("hello", "0x1234"), Err(WalletError::Malformed));
        assert_eq!(signer("hello", "zz"), Err(WalletError::Malformed));
        // s = n - 1 is high.
        let high = format!(
            "0x{}{}1b",
            "11".repeat(32),
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140"
        );
        assert_eq!(signer("hello", &high), Err(WalletError::HighS));
    }

    #[test]
    fn addresses_are_shown_with_their_eip55_checksum() {
        let good = "0x52908400098527886E0F7030069857D2E4169EE7";
        assert_eq!(checksummed(&good.to_ascii_lowercase()), good);
    }
}
