//! The ledger service against a real store file: accrual in pages, failed
//! writes that leave nothing behind, the start-up check from its checkpoint,
//! the full audit, and a second service reading what the first wrote.

use super::*;

#[test]
fn one_accrual_takes_every_waiting_credit_however_many_pages() {
    let n = 2 * ACCRUE_PAGE + 1;
    let (_dir, _db, project, rewards) = setup(n);
    assert_eq!(rewards.accrue(&project).unwrap(), n as usize);
    assert_eq!(rewards.accrue(&project).unwrap(), 0, "nothing twice");
    assert_eq!(rewards.head().unwrap().seq, n as u64);
}

/// A store, a project database with `n` credits for one device, and the service.
fn setup(n: i64) -> (tempfile::TempDir, PathBuf, DbSlot, Rewards) {
    let dir = tempfile::tempdir().unwrap();
    let db_path = crate::store::db_path(dir.path());
    crate::store::migrate(&mut Connection::open(&db_path).unwrap()).unwrap();
    let project = DbSlot::open(None, Duration::from_millis(100)).unwrap();
    add_credits(&project, 1, &[0xab], n, T0);
    let rewards = open(&dir);
    (dir, db_path, project, rewards)
}

const T0: i64 = 1_795_515_000;

fn config() -> RewardsConfig {
    RewardsConfig {
        epoch_s: 20,
        ..RewardsConfig::default()
    }
}

fn open(dir: &tempfile::TempDir) -> Rewards {
    Rewards::open(dir.path(), &crate::store::db_path(dir.path()), config()).unwrap()
}

/// `n` credits of 1000 units for each device in `devices`, one every 5 s from
/// `t0`, with event ids from `first`.
fn add_credits(project: &DbSlot, first: i64, devices: &[u8], n: i64, t0: i64) {
    project
        .read(|db| {
            let mut id = first;
            for i in 0..n {
                for d in devices {
                    db.conn()
                        .execute(
                            "INSERT INTO _ws_credits (event_id, applet, idx, applet_hash, address, amount, timestamp)
                             VALUES (?1, 'tiered', 0, 'h', ?2, '1000', ?3)",
                            rusqlite::params![id, format!("0x{}", hex::encode([*d; 20])), t0 + i * 5],
                        )
                        .unwrap();
                    id += 1;
                }
            }
        })
        .unwrap();
}

/// Three devices over three sealed epochs, then a fourth epoch not sealed yet:
/// the checkpoint is the third seal.
fn sealed_fleet() -> (tempfile::TempDir, PathBuf, DbSlot, Rewards) {
    let (dir, db, project, rewards) = setup(0);
    add_credits(&project, 1, &[1, 2, 3], 12, T0);
    rewards.accrue(&project).unwrap();
    assert_eq!(rewards.seal_due(T0 as u64 + 1000).unwrap().len(), 3);
    add_credits(&project, 1000, &[1, 2, 3], 4, T0 + 2000);
    rewards.accrue(&project).unwrap();
    (dir, db, project, rewards)
}

fn sql(db: &Path, sql: &str) {
    Connection::open(db).unwrap().execute_batch(sql).unwrap();
}

#[test]
fn the_start_checks_what_came_after_its_checkpoint_and_verify_checks_everything() {
    let (dir, db, _project, rewards) = sealed_fleet();
    drop(rewards);
    sql(&db, "UPDATE ledger_entries SET amount = '999' WHERE seq = 1");
    let _ = open(&dir); // before the checkpoint: the start does not walk it
    match verify_stored(dir.path(), &config(), None).unwrap() {
        Err(wattstream_rewards::Tamper::Entry { seq: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    sql(&db, "UPDATE ledger_entries SET amount = '1000' WHERE seq = 1");
    assert!(verify_stored(dir.path(), &config(), None).unwrap().is_ok());
    sql(
        &db,
        "UPDATE ledger_entries SET amount = '999' WHERE seq = (SELECT MAX(seq) FROM ledger_entries)",
    );
    let refused = Rewards::open(dir.path(), &db, config()).err().expect("refused");
    assert!(refused.to_string().contains("entry 48"), "{refused}");
}

#[test]
fn a_balance_row_the_entries_do_not_give_is_named_at_start_and_by_verify() {
    let (dir, db, _project, rewards) = sealed_fleet();
    drop(rewards);
    let a = format!("0x{}", hex::encode([2u8; 20]));
    sql(
        &db,
        &format!("UPDATE ledger_balances SET balance = '99000' WHERE address = '{a}'"),
    );
    let refused = Rewards::open(dir.path(), &db, config()).err().expect("refused");
    assert!(refused.to_string().contains("balance"), "{refused}");
    assert!(matches!(
        verify_stored(dir.path(), &config(), None).unwrap(),
        Err(wattstream_rewards::Tamper::Derived { .. })
    ));
}

#[test]
fn a_store_from_before_the_ledger_rows_gets_them_at_its_first_start_with_the_same_answers() {
    let (dir, db, _project, rewards) = sealed_fleet();
    let id = DeviceId([3; 20]);
    let before = rewards.answer(&id).unwrap();
    drop(rewards);
    sql(
        &db,
        "DELETE FROM ledger_balances; DELETE FROM ledger_totals; DELETE FROM seal_leaves;
         DELETE FROM ledger_meta WHERE key IN ('book', 'verified_epoch', 'newest_ts');",
    );
    assert!(
        verify_stored(dir.path(), &config(), None).is_err(),
        "not filled yet"
    );
    let after = open(&dir).answer(&id).unwrap();
    assert_eq!(after, before);
    assert_eq!(after.balance_units(), Some(16_000));
    assert!(verify_stored(dir.path(), &config(), None).unwrap().is_ok());
}

/// Nothing the answer needs is kept by the service that wrote it: a second
/// service, opened before anything was accrued, answers the same.
#[test]
fn a_second_service_on_the_store_answers_what_the_first_wrote() {
    let (dir, _db, project, writer) = setup(0);
    let reader = open(&dir);
    add_credits(&project, 1, &[1, 2, 3], 12, T0);
    writer.accrue(&project).unwrap();
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

fn fail_inserts(db: &Path, table: &str, on: bool) {
    let c = Connection::open(db).unwrap();
    let sql = if on {
        format!("CREATE TRIGGER fail BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    } else {
        "DROP TRIGGER fail".to_string()
    };
    c.execute_batch(&sql).unwrap();
}

#[test]
fn a_failed_accrual_leaves_nothing_behind_and_the_next_one_chains_on_the_store() {
    let (dir, db, project, rewards) = setup(3);
    fail_inserts(&db, "ledger_entries", true);
    assert!(rewards.accrue(&project).is_err());
    assert_eq!(
        rewards.head().unwrap().seq,
        0,
        "memory kept nothing the store refused"
    );
    fail_inserts(&db, "ledger_entries", false);
    assert_eq!(rewards.accrue(&project).unwrap(), 3);
    assert_eq!(rewards.head().unwrap().seq, 3);
    drop(rewards);
    // The next start verifies the stored chain (a gap would refuse it).
    assert_eq!(
        Rewards::open(dir.path(), &db, config())
            .unwrap()
            .head()
            .unwrap()
            .seq,
        3
    );
}

#[test]
fn a_seal_that_was_not_stored_is_never_served() {
    let (_dir, db, project, rewards) = setup(2);
    rewards.accrue(&project).unwrap();
    fail_inserts(&db, "seals", true);
    let later = 1_795_515_000 + 3600;
    assert!(rewards.seal_due(later).is_err());
    assert_eq!(rewards.head().unwrap().last_sealed_epoch, None);
    let id = DeviceId([0xab; 20]);
    assert!(rewards.answer(&id).unwrap().latest_epoch.is_none());
    fail_inserts(&db, "seals", false);
    assert_eq!(rewards.seal_due(later).unwrap().len(), 1);
    let view = rewards.answer(&id).unwrap();
    assert!(view.latest_epoch.is_some() && view.proof.is_some());
    assert_eq!(view.balance_units(), Some(2000));
}
