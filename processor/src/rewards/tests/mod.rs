//! The ledger service against a real store, on both engines: accrual in
//! pages, failed writes that leave nothing behind, the start-up check from
//! its checkpoint, the full audit, and a second service reading what the
//! first wrote. PostgreSQL's own rules (several processes, the watermark) are
//! in [`pg`].

mod fixture;
mod pg;
mod prepared;

use fixture::{Fixture, Kind, T0};
use wattstream_sdk::DeviceId;

use super::ACCRUE_PAGE;

/// Each test once per engine, under `sqlite::` and `postgres::`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Kind::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::Kind::Postgres) } )*
        }
    };
}

on_both_engines!(
    one_accrual_takes_every_waiting_credit_however_many_pages,
    the_start_checks_what_came_after_its_checkpoint_and_verify_checks_everything,
    a_balance_row_the_entries_do_not_give_is_named_at_start_and_by_verify,
    a_store_from_before_the_ledger_rows_gets_them_at_its_first_start_with_the_same_answers,
    a_second_service_on_the_store_answers_what_the_first_wrote,
    a_failed_accrual_leaves_nothing_behind_and_the_next_one_chains_on_the_store,
    a_seal_that_was_not_stored_is_never_served,
);

fn one_accrual_takes_every_waiting_credit_however_many_pages(kind: Kind) {
    let n = 2 * ACCRUE_PAGE + 1;
    let f = Fixture::new(kind);
    f.add_credits(1, &[0xab], n, T0);
    let rewards = f.open().unwrap();
    assert_eq!(rewards.through_event().unwrap(), None, "nothing accrued yet");
    assert_eq!(f.accrue(&rewards).unwrap(), n as usize);
    assert_eq!(
        rewards.through_event().unwrap(),
        Some(n),
        "every event up to the last one"
    );
    assert_eq!(f.accrue(&rewards).unwrap(), 0, "nothing twice");
    assert_eq!(rewards.head().unwrap().seq, n as u64);
    assert_eq!(rewards.head().unwrap().through_event, Some(n));
}

/// Three devices over three sealed epochs, then a fourth epoch not sealed yet:
/// the checkpoint is the third seal.
fn sealed_fleet(kind: Kind) -> (Fixture, super::Rewards) {
    let f = Fixture::new(kind);
    let rewards = f.open().unwrap();
    f.add_credits(1, &[1, 2, 3], 12, T0);
    f.accrue(&rewards).unwrap();
    assert_eq!(rewards.seal_due(T0 as u64 + 1000).unwrap().len(), 3);
    f.add_credits(1000, &[1, 2, 3], 4, T0 + 2000);
    f.accrue(&rewards).unwrap();
    (f, rewards)
}

fn the_start_checks_what_came_after_its_checkpoint_and_verify_checks_everything(kind: Kind) {
    let (f, rewards) = sealed_fleet(kind);
    drop(rewards);
    f.sql("UPDATE ledger_entries SET amount = '999' WHERE seq = 1");
    let _ = f.open().unwrap(); // before the checkpoint: the start does not walk it
    match f.verify().unwrap() {
        Err(wattstream_rewards::Tamper::Entry { seq: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    f.sql("UPDATE ledger_entries SET amount = '1000' WHERE seq = 1");
    assert!(f.verify().unwrap().is_ok());
    f.sql("UPDATE ledger_entries SET amount = '999' WHERE seq = (SELECT MAX(seq) FROM ledger_entries)");
    let refused = f.open().err().expect("refused");
    assert!(refused.to_string().contains("entry 48"), "{refused}");
}

fn a_balance_row_the_entries_do_not_give_is_named_at_start_and_by_verify(kind: Kind) {
    let (f, rewards) = sealed_fleet(kind);
    drop(rewards);
    let a = format!("0x{}", hex::encode([2u8; 20]));
    f.sql(&format!(
        "UPDATE ledger_balances SET balance = '99000' WHERE address = '{a}'"
    ));
    let refused = f.open().err().expect("refused");
    assert!(refused.to_string().contains("balance"), "{refused}");
    assert!(matches!(
        f.verify().unwrap(),
        Err(wattstream_rewards::Tamper::Derived { .. })
    ));
}

fn a_store_from_before_the_ledger_rows_gets_them_at_its_first_start_with_the_same_answers(kind: Kind) {
    let (f, rewards) = sealed_fleet(kind);
    let id = DeviceId([3; 20]);
    let before = rewards.answer(&id).unwrap();
    drop(rewards);
    f.sql(
        "DELETE FROM ledger_balances; DELETE FROM ledger_totals; DELETE FROM seal_leaves;
         DELETE FROM ledger_meta WHERE key IN ('book', 'verified_epoch', 'newest_ts');",
    );
    assert!(f.verify().is_err(), "not filled yet");
    let after = f.open().unwrap().answer(&id).unwrap();
    assert_eq!(after, before);
    assert_eq!(after.balance_units(), Some(16_000));
    assert!(f.verify().unwrap().is_ok());
}

/// Nothing the answer needs is kept by the service that wrote it: a second
/// service, opened before anything was accrued, answers the same.
fn a_second_service_on_the_store_answers_what_the_first_wrote(kind: Kind) {
    let f = Fixture::new(kind);
    let (writer, reader) = (f.open().unwrap(), f.open().unwrap());
    f.add_credits(1, &[1, 2, 3], 12, T0);
    f.accrue(&writer).unwrap();
    writer.seal_due(T0 as u64 + 1000).unwrap();
    for d in [1u8, 2, 3] {
        let id = DeviceId([d; 20]);
        let view = reader.answer(&id).unwrap();
        assert_eq!(view, writer.answer(&id).unwrap());
        assert_eq!(view.balance_units(), Some(12_000));
        let (seal, proof) = (view.latest_epoch.unwrap(), view.proof.unwrap());
        wattstream_sdk::proof::verify(&seal, &proof, writer.key.public_key()).unwrap();
        assert_eq!(proof.balance, "12000");
    }
    assert_eq!(reader.head().unwrap(), writer.head().unwrap());
    assert_eq!(reader.seal_view(2).unwrap(), writer.seal_view(2).unwrap());
}

fn a_failed_accrual_leaves_nothing_behind_and_the_next_one_chains_on_the_store(kind: Kind) {
    let f = Fixture::new(kind);
    f.add_credits(1, &[0xab], 3, T0);
    let rewards = f.open().unwrap();
    f.fail_inserts("ledger_entries", true);
    assert!(f.accrue(&rewards).is_err());
    assert_eq!(
        rewards.head().unwrap().seq,
        0,
        "memory kept nothing the store refused"
    );
    f.fail_inserts("ledger_entries", false);
    assert_eq!(f.accrue(&rewards).unwrap(), 3, "the credits are still there");
    assert_eq!(rewards.head().unwrap().seq, 3);
    drop(rewards);
    // The next start verifies the stored chain (a gap would refuse it).
    assert_eq!(f.open().unwrap().head().unwrap().seq, 3);
}

fn a_seal_that_was_not_stored_is_never_served(kind: Kind) {
    let f = Fixture::new(kind);
    f.add_credits(1, &[0xab], 2, T0);
    let rewards = f.open().unwrap();
    f.accrue(&rewards).unwrap();
    f.fail_inserts("seals", true);
    let later = T0 as u64 + 3600;
    assert!(rewards.seal_due(later).is_err());
    assert_eq!(rewards.head().unwrap().last_sealed_epoch, None);
    let id = DeviceId([0xab; 20]);
    assert!(rewards.answer(&id).unwrap().latest_epoch.is_none());
    f.fail_inserts("seals", false);
    assert_eq!(rewards.seal_due(later).unwrap().len(), 1);
    let view = rewards.answer(&id).unwrap();
    assert!(view.latest_epoch.is_some() && view.proof.is_some());
    assert_eq!(view.balance_units(), Some(2000));
}
