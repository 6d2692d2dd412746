//! Transactions and contract calls (`ws_send_tx`, `ws_call_contract`). The
//! built-in target is the rewards ledger: an ERC-20 `mint` to the project's
//! token credits it (collected as an effect, applied only if the call
//! succeeds), `balanceOf` reads it. Decoding is in `applets::evm`. Anything
//! else goes to a configured chain (`chain::adapter`): a transaction becomes
//! an intent the sender sends after the event commits, a call an `eth_call`.

use wasmtime::Linker;
use wattstream_abi::imports::{ENV, WS_CALL_CONTRACT, WS_SEND_TX};
use wattstream_abi::{Level, Status};

use super::memory::{C, READ_MAX, read, write_out};
use crate::applets::evm::{self, LedgerCall};
use crate::applets::state::{Credit, Effect, HostState};
use crate::chain::adapter;

pub fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        ENV,
        WS_SEND_TX,
        |mut c: C<'_>, chain: i32, ptr: i32, len: i32, out_ptr: i32, out_len: i32| {
            let Some(bytes) = read(&mut c, ptr, len, READ_MAX) else {
                return Ok(Status::FromVmFailed.code());
            };
            let Some(token) = c.data().event.token.clone() else {
                c.data_mut().log(
                    Level::Error.name(),
                    b"ws_send_tx: nothing settles mints or sends transactions for events of the W3bstream-compatible endpoint; send readings to POST /v1/events",
                );
                return Ok(Status::Failed.code());
            };
            match evm::decode(&bytes, &token) {
                Ok(Some(LedgerCall::Mint { .. })) if !c.data_mut().room_for(Effect::Credit) => {
                    Ok(Status::Failed.code())
                }
                Ok(Some(LedgerCall::Mint { address, amount })) => {
                    let state = c.data_mut();
                    let n = state.effects.credits.len();
                    state.effects.credits.push(Credit {
                        address: format!("0x{}", hex::encode(address)),
                        amount,
                    });
                    let id = format!("0x{:016x}{:016x}", state.event.seed, n);
                    write_out(&mut c, id.as_bytes(), out_ptr, out_len)
                }
                Ok(Some(LedgerCall::BalanceOf { .. })) => Ok(Status::Failed.code()),
                Ok(None) => to_chain(&mut c, chain, &bytes, &token, out_ptr, out_len),
                Err(e) => {
                    c.data_mut()
                        .log(Level::Error.name(), format!("ws_send_tx: {e}").as_bytes());
                    Ok(Status::Failed.code())
                }
            }
        },
    )?;

    linker.func_wrap(
        ENV,
        WS_CALL_CONTRACT,
        |mut c: C<'_>, chain: i32, ptr: i32, len: i32, out_ptr: i32, out_len: i32| {
            let Some(bytes) = read(&mut c, ptr, len, READ_MAX) else {
                return Ok(Status::FromVmFailed.code());
            };
            let Some(token) = c.data().event.token.clone() else {
                return Ok(Status::Failed.code());
            };
            match evm::decode(&bytes, &token) {
                Ok(Some(LedgerCall::BalanceOf { address })) => {
                    let word = evm::uint256(c.data().balance(&address));
                    write_out(&mut c, &word, out_ptr, out_len)
                }
                Ok(Some(LedgerCall::Mint { .. })) => Ok(Status::Failed.code()),
                Ok(None) => call_chain(&mut c, chain, &bytes, out_ptr, out_len),
                Err(e) => {
                    c.data_mut()
                        .log(Level::Error.name(), format!("ws_call_contract: {e}").as_bytes());
                    Ok(Status::Failed.code())
                }
            }
        },
    )?;
    Ok(())
}

/// A chain id the event may use, or a log line saying why not.
fn configured(c: &mut C<'_>, what: &str, chain: i32, token: &str) -> Option<u64> {
    let id = u64::try_from(chain)
        .ok()
        .filter(|id| c.data().event.chains.contains(id));
    if id.is_none() {
        let line = format!(
            "{what}: no chain {chain} is configured (add [chains.{chain}] with rpc and key_file); \
             mints of the rewards ledger token {token} need none"
        );
        c.data_mut().log(Level::Error.name(), line.as_bytes());
    }
    id
}

/// `ws_send_tx` to a configured chain: an intent, sent once the event's
/// effects commit. The answer is its id, `pending:CHAIN:EVENT:INDEX` (no hash
/// exists yet: the transaction is signed after the commit).
fn to_chain(
    c: &mut C<'_>,
    chain: i32,
    bytes: &[u8],
    token: &str,
    out_ptr: i32,
    out_len: i32,
) -> wasmtime::Result<i32> {
    let Some(id) = configured(c, "ws_send_tx", chain, token) else {
        return Ok(Status::Failed.code());
    };
    match adapter::intent(id, bytes) {
        Ok(_) if !c.data_mut().room_for(Effect::Tx) => Ok(Status::Failed.code()),
        Ok(tx) => {
            let state = c.data_mut();
            let n = state.effects.txs.len();
            state.effects.txs.push(tx);
            let answer = format!("pending:{id}:{}:{n}", state.event.seed);
            write_out(c, answer.as_bytes(), out_ptr, out_len)
        }
        Err(e) => {
            c.data_mut()
                .log(Level::Error.name(), format!("ws_send_tx: {e}").as_bytes());
            Ok(Status::Failed.code())
        }
    }
}

/// `ws_call_contract` to a configured chain: an `eth_call` within the
/// applet's deadline; the answer is the call's raw return data. Each answer
/// is kept with the event; a replay gets the kept one, not the chain's now.
fn call_chain(c: &mut C<'_>, chain: i32, bytes: &[u8], out_ptr: i32, out_len: i32) -> wasmtime::Result<i32> {
    let token = c.data().event.token.clone().unwrap_or_default();
    let Some(id) = configured(c, "ws_call_contract", chain, &token) else {
        return Ok(Status::Failed.code());
    };
    if !c.data_mut().room_for(Effect::Call) {
        return Ok(Status::Failed.code());
    }
    let n = c.data().effects.calls.len();
    let answer = match (&c.data().event.calls, c.data().chains.clone()) {
        (Some(kept), _) => match kept.get(n) {
            Some(Some(a)) => Ok(a.clone()),
            Some(None) => Err("it failed when the event first ran".to_string()),
            None => Err("no answer was kept for it when the event first ran".to_string()),
        },
        (None, Some(chains)) => {
            let within = std::time::Duration::from_millis(c.data().applet_limits.deadline_ms);
            adapter::parse(bytes).and_then(|(to, _, data)| chains.call(id, to, data, within))
        }
        (None, None) => {
            c.data_mut().log(
                Level::Error.name(),
                b"ws_call_contract: chain calls are not made here (a local run without --chain)",
            );
            return Ok(Status::Failed.code());
        }
    };
    c.data_mut().effects.calls.push(answer.as_ref().ok().cloned());
    match answer {
        Ok(out) => write_out(c, &out, out_ptr, out_len),
        Err(e) => {
            c.data_mut()
                .log(Level::Error.name(), format!("ws_call_contract: {e}").as_bytes());
            Ok(Status::Failed.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Guest, wat};
    use super::*;
    use wattstream_abi::LEDGER_TOKEN;

    fn tx(selector: &str, amount: Option<u128>) -> Vec<u8> {
        let mut data = format!("0x{selector}{:0>64}", "ab".repeat(20));
        if let Some(a) = amount {
            data += &format!("{a:064x}");
        }
        format!(r#"{{"to":"{LEDGER_TOKEN}","value":"0","data":"{data}"}}"#).into_bytes()
    }

    #[test]
    fn a_mint_is_a_credit_and_balance_of_sees_it_in_the_same_call() {
        let (mint, balance) = (tx("40c10f19", Some(1234)), tx("70a08231", None));
        let other = format!(r#"{{"to":"0x{}","data":"0x40c10f19"}}"#, "9".repeat(40)).into_bytes();
        let data = [
            (0u32, mint.as_slice()),
            (400, balance.as_slice()),
            (800, other.as_slice()),
        ];
        let mut g = Guest::new(
            &wat(&[(ENV, WS_SEND_TX, 5), (ENV, WS_CALL_CONTRACT, 5)], &data),
            link,
        );
        let n = |b: &[u8]| b.len() as i32;
        assert_eq!(g.call(WS_SEND_TX, &[0, 0, n(&mint), 100, 104]), 0);
        assert_eq!(g.out(), format!("0x{:016x}{:016x}", 42, 0).as_bytes());
        let credits = &g.state().effects.credits;
        assert_eq!(credits.len(), 1);
        assert_eq!(
            (credits[0].address.as_str(), credits[0].amount),
            (&*format!("0x{}", "ab".repeat(20)), 1234)
        );
        assert_eq!(g.call(WS_CALL_CONTRACT, &[0, 400, n(&balance), 100, 104]), 0);
        assert_eq!(g.out(), evm::uint256(1234));
        // A mint through call_contract, a balance through send_tx, another token.
        assert_eq!(
            g.call(WS_CALL_CONTRACT, &[0, 0, n(&mint), 100, 104]),
            Status::Failed.code()
        );
        assert_eq!(
            g.call(WS_SEND_TX, &[0, 400, n(&balance), 100, 104]),
            Status::Failed.code()
        );
        assert_eq!(
            g.call(WS_SEND_TX, &[0, 800, n(&other), 100, 104]),
            Status::Failed.code()
        );
        assert_eq!(g.state().effects.credits.len(), 1);
    }

    #[test]
    fn without_a_settling_ledger_a_mint_fails_with_a_log_line() {
        let mint = tx("40c10f19", Some(5));
        let mut g = Guest::new(&wat(&[(ENV, WS_SEND_TX, 5)], &[(0, &mint)]), link);
        g.store.data_mut().event.token = None;
        assert_eq!(
            g.call(WS_SEND_TX, &[0, 0, mint.len() as i32, 100, 104]),
            Status::Failed.code()
        );
        assert!(g.state().effects.credits.is_empty());
        assert!(g.state().effects.logs[0].message.contains("POST /v1/events"));
    }

    #[test]
    fn a_call_mints_at_most_max_credits_times() {
        let mint = tx("40c10f19", Some(1));
        // The request sits past the out pointers (100, 104), which each call rewrites.
        let mut g = Guest::new(&wat(&[(ENV, WS_SEND_TX, 5)], &[(400, &mint)]), link);
        let call = |g: &mut Guest| g.call(WS_SEND_TX, &[0, 400, mint.len() as i32, 100, 104]);
        for _ in 0..crate::applets::state::MAX_CREDITS {
            assert_eq!(call(&mut g), 0);
        }
        assert_eq!(call(&mut g), Status::Failed.code());
        assert_eq!(
            g.state().effects.credits.len(),
            crate::applets::state::MAX_CREDITS
        );
        assert!(g.state().effects.logs[0].message.contains("limit"));
    }

    #[test]
    fn a_transaction_for_a_configured_chain_is_an_intent_and_for_another_a_logged_failure() {
        let to = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
        let tx = format!(r#"{{"to":"{to}","value":"7","data":"40c10f19"}}"#).into_bytes();
        let mut g = Guest::new(&wat(&[(ENV, WS_SEND_TX, 5)], &[(400, &tx)]), link);
        let send = |g: &mut Guest, chain: i32| g.call(WS_SEND_TX, &[chain, 400, tx.len() as i32, 100, 104]);
        assert_eq!(send(&mut g, 1337), 0);
        assert_eq!(g.out(), b"pending:1337:42:0");
        assert_eq!(
            g.state().effects.txs,
            vec![adapter::TxIntent {
                chain_id: 1337,
                to: to.into(),
                value: "7".into(),
                data: "0x40c10f19".into(),
            }]
        );
        for other in [1, -1, 0] {
            assert_eq!(send(&mut g, other), Status::Failed.code());
        }
        assert_eq!(g.state().effects.txs.len(), 1);
        assert!(g.state().effects.logs[0].message.contains("[chains.1]"));
        assert!(g.state().effects.credits.is_empty());
        for _ in 1..crate::applets::state::MAX_TXS {
            assert_eq!(send(&mut g, 1337), 0);
        }
        assert_eq!(send(&mut g, 1337), Status::Failed.code());
        assert_eq!(g.state().effects.txs.len(), crate::applets::state::MAX_TXS);
    }

    #[test]
    fn a_chain_call_without_live_chains_fails_with_a_log_line() {
        let call = br#"{"to":"0x5fbdb2315678afecb367f032d93f642f64180aa3","data":"70a08231"}"#;
        let mut g = Guest::new(&wat(&[(ENV, WS_CALL_CONTRACT, 5)], &[(400, call)]), link);
        let n = call.len() as i32;
        assert_eq!(
            g.call(WS_CALL_CONTRACT, &[1337, 400, n, 100, 104]),
            Status::Failed.code()
        );
        assert!(g.state().effects.logs[0].message.contains("not made here"));
        assert!(g.state().effects.calls.is_empty());
        assert_eq!(
            g.call(WS_CALL_CONTRACT, &[5, 400, n, 100, 104]),
            Status::Failed.code()
        );
        assert!(g.state().effects.logs[1].message.contains("[chains.5]"));
    }

    #[test]
    fn a_replayed_chain_call_gets_the_answer_kept_when_the_event_first_ran() {
        let call = br#"{"to":"0x5fbdb2315678afecb367f032d93f642f64180aa3","data":"70a08231"}"#;
        let mut g = Guest::new(&wat(&[(ENV, WS_CALL_CONTRACT, 5)], &[(400, call)]), link);
        g.store.data_mut().event.calls = Some(vec![Some(vec![7; 32]), None]);
        let n = call.len() as i32;
        assert_eq!(g.call(WS_CALL_CONTRACT, &[1337, 400, n, 100, 104]), 0);
        assert_eq!(g.out(), vec![7; 32]);
        // The second failed then, so it fails now; a third was never made.
        assert_eq!(
            g.call(WS_CALL_CONTRACT, &[1337, 400, n, 100, 104]),
            Status::Failed.code()
        );
        assert_eq!(
            g.call(WS_CALL_CONTRACT, &[1337, 400, n, 100, 104]),
            Status::Failed.code()
        );
        assert!(g.state().effects.logs[1].message.contains("no answer was kept"));
        assert_eq!(g.state().effects.calls, vec![Some(vec![7; 32]), None, None]);
    }
}
