//! The settlement calls applets make through `ws_send_tx` and `ws_call_contract`
//! (DESIGN §4): ERC-20 `mint(address,uint256)` (selector `0x40c10f19`) to the
//! ledger token credits the rewards ledger; `balanceOf(address)` (`0x70a08231`)
//! reads it. Anything aimed elsewhere goes to a configured chain
//! (`chain::adapter`), or fails with a clear log line.

use serde::Deserialize;

use wattstream_abi::{BALANCE_OF_SELECTOR as BALANCE_OF, MINT_SELECTOR as MINT};

#[derive(Deserialize)]
struct Tx {
    to: String,
    #[serde(default)]
    data: String,
}

/// A decoded call to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerCall {
    Mint { address: [u8; 20], amount: u128 },
    BalanceOf { address: [u8; 20] },
}

fn hex_bytes(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    hex::decode(s).map_err(|_| "data is not hex".to_string())
}

fn address_word(word: &[u8]) -> Result<[u8; 20], String> {
    if word[..12].iter().any(|b| *b != 0) {
        return Err("address word has non-zero high bytes".into());
    }
    Ok(word[12..32].try_into().expect("20 bytes"))
}

/// Decodes a transaction or call JSON aimed at `token` (case-insensitive);
/// `None` when it is aimed elsewhere (a configured chain's, `chain::adapter`).
pub fn decode(json: &[u8], token: &str) -> Result<Option<LedgerCall>, String> {
    let tx: Tx = serde_json::from_slice(json).map_err(|e| format!("bad transaction JSON: {e}"))?;
    if !tx.to.trim().eq_ignore_ascii_case(token) {
        return Ok(None);
    }
    let data = hex_bytes(&tx.data)?;
    match (data.get(..4), data.len()) {
        (Some(sel), 68) if sel == MINT => {
            let amount = &data[36..68];
            if amount[..16].iter().any(|b| *b != 0) {
                return Err("mint amount above 2^128".into());
            }
            Ok(Some(LedgerCall::Mint {
                address: address_word(&data[4..36])?,
                amount: u128::from_be_bytes(amount[16..].try_into().expect("16 bytes")),
            }))
        }
        (Some(sel), 36) if sel == BALANCE_OF => Ok(Some(LedgerCall::BalanceOf {
            address: address_word(&data[4..36])?,
        })),
        _ => Err("only mint(address,uint256) and balanceOf(address) are supported on the ledger".into()),
    }
}

/// A uint256 result word.
pub fn uint256(x: u128) -> Vec<u8> {
    let mut out = vec![0u8; 32];
    out[16..].copy_from_slice(&x.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattstream_abi::LEDGER_TOKEN;

    #[test]
    fn decodes_mint_with_or_without_0x() {
        let data = format!("40c10f19{:0>64}{:064x}", "ab".repeat(20), 12345u128);
        for d in [data.clone(), format!("0x{data}")] {
            let tx = format!(r#"{{"to":"{LEDGER_TOKEN}","value":"0","data":"{d}"}}"#);
            assert_eq!(
                decode(tx.as_bytes(), LEDGER_TOKEN),
                Ok(Some(LedgerCall::Mint {
                    address: [0xab; 20],
                    amount: 12345
                }))
            );
        }
    }

    #[test]
    fn leaves_other_targets_and_refuses_other_calls() {
        let tx = r#"{"to":"0x00000000000000000000000000000000000000ff","data":"0x"}"#;
        assert_eq!(decode(tx.as_bytes(), LEDGER_TOKEN), Ok(None));
        let tx = format!(r#"{{"to":"{LEDGER_TOKEN}","data":"0xa9059cbb"}}"#);
        assert!(decode(tx.as_bytes(), LEDGER_TOKEN).is_err());
        let big = format!(
            r#"{{"to":"{LEDGER_TOKEN}","data":"0x40c10f19{:0>64}{}"}}"#,
            "01",
            "f".repeat(64)
        );
        assert!(
            decode(big.as_bytes(), LEDGER_TOKEN)
                .unwrap_err()
                .contains("2^128")
        );
    }
}
