//! Appending a binding record, on either engine, in one transaction with the
//! checks that depend on state: the nonce never accepted before (also a
//! `UNIQUE` column), the device free for a claim or owned by the signer for a
//! transfer, not revoked. On SQLite the transaction holds the write lock from
//! its first statement; on PostgreSQL an advisory lock makes every processor
//! on the database take turns, so a racing second request sees the first's
//! record. The device row changes in the same transaction, and on PostgreSQL
//! the registry notification goes out at its commit.

use wattstream_sdk::binding::ClaimRequest;

use super::record::{Authority, Kind, Record, genesis};
use super::{Change, OnboardError};
use crate::store::sql::{Engine, Sql, SqlError, Tx, Val};

/// Advisory lock id for binding changes on PostgreSQL.
const BINDINGS_LOCK: i64 = 0x5761_7474_5374_0003;

struct DeviceState {
    owner: Option<String>,
    revoked: bool,
}

fn device(tx: &dyn Sql, id: &str) -> Result<Option<DeviceState>, SqlError> {
    tx.row(
        "SELECT owner, revoked_at FROM devices WHERE device_id = ?1",
        &[id.into()],
    )?
    .map(|r| {
        Ok(DeviceState {
            owner: r[0].opt_text(0)?.map(str::to_string),
            revoked: r[1].opt_int(1)?.is_some(),
        })
    })
    .transpose()
}

/// Appends `change` if the state allows it; `Ok(Err(_))` when it does not
/// (nothing written).
pub(super) fn append(
    conn: &dyn Sql,
    change: Change,
    epoch: u64,
    now: u64,
) -> Result<Result<Record, OnboardError>, SqlError> {
    let tx = Tx::write(conn, BINDINGS_LOCK)?;
    let (device_id, nonce) = match &change {
        Change::Claim { request, .. } => (request.device_id.clone(), request.nonce.clone()),
        Change::Transfer { request, .. } => (request.device_id.clone(), request.nonce.clone()),
    };
    if tx
        .row(
            "SELECT 1 FROM bindings WHERE nonce = ?1",
            &[nonce.as_str().into()],
        )?
        .is_some()
    {
        return Ok(Err(OnboardError::NonceReused));
    }
    let state = device(&*tx, &device_id)?;
    let last = tx.row(
        "SELECT seq, hash FROM bindings WHERE device_id = ?1 ORDER BY seq DESC LIMIT 1",
        &[device_id.as_str().into()],
    )?;
    let (seq, prev) = match last {
        Some(r) => (r[0].int(0)? as u64 + 1, r[1].text(1)?.to_string()),
        None => (0, genesis()),
    };
    if state.as_ref().is_some_and(|d| d.revoked) {
        return Ok(Err(OnboardError::Revoked(device_id)));
    }
    let mut record = match change {
        Change::Claim {
            request,
            owner_signature,
            new_devices_per_hour,
        } => {
            if state.as_ref().is_some_and(|d| d.owner.is_some()) {
                return Ok(Err(OnboardError::AlreadyBound(device_id)));
            }
            if state.is_none()
                && let Some(limit) = new_devices_per_hour
                && !self_registered(&*tx, &device_id, limit, now)?
            {
                return Ok(Err(OnboardError::NewDeviceLimit {
                    device: device_id,
                    limit,
                }));
            }
            // A device nobody ever owned is its first owner's from now; one
            // that was unbound is the new owner's from the next epoch.
            let effective_epoch = if seq == 0 { epoch } else { epoch + 1 };
            write_device(&*tx, state.is_some(), &request, now)?;
            Record {
                seq,
                device_id: device_id.clone(),
                kind: Kind::Claim,
                owner: Some(request.owner.clone()),
                claim: Some(request),
                transfer: None,
                owner_signature: Some(owner_signature),
                from_signature: None,
                authorized_by: Authority::Owner,
                effective_epoch,
                at: now,
                prev,
                hash: String::new(),
            }
        }
        Change::Transfer {
            request,
            from_signature,
            owner_signature,
        } => {
            let Some(current) = state else {
                return Ok(Err(OnboardError::UnknownDevice(device_id)));
            };
            if current.owner.as_deref() != Some(request.from.as_str()) {
                return Ok(Err(OnboardError::NotCurrentOwner {
                    device: device_id,
                    owner: current.owner.unwrap_or_else(|| "nobody".into()),
                    from: request.from,
                }));
            }
            tx.exec(
                "UPDATE devices SET owner = ?2 WHERE device_id = ?1",
                &[device_id.as_str().into(), request.to.clone().into()],
            )?;
            Record {
                seq,
                device_id: device_id.clone(),
                kind: if request.to.is_some() {
                    Kind::Transfer
                } else {
                    Kind::Unbind
                },
                owner: request.to.clone(),
                authorized_by: if from_signature.is_some() {
                    Authority::Owner
                } else {
                    Authority::Admin
                },
                claim: None,
                transfer: Some(request),
                owner_signature,
                from_signature,
                effective_epoch: epoch + 1,
                at: now,
                prev,
                hash: String::new(),
            }
        }
    };
    record.hash = record.compute_hash();
    let json = serde_json::to_string(&record).expect("a record serialises");
    tx.exec(
        "INSERT INTO bindings (device_id, seq, kind, owner, effective_epoch, nonce, hash, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &[
            device_id.as_str().into(),
            Val::Int(seq as i64),
            record.kind.as_str().into(),
            record.owner.clone().into(),
            Val::Int(record.effective_epoch as i64),
            nonce.into(),
            record.hash.clone().into(),
            json.into(),
        ],
    )?;
    if tx.engine() == Engine::Postgres {
        tx.exec(
            "SELECT pg_notify(?1, ?2)",
            &[
                crate::store::pg::notify::CHANNEL.into(),
                device_id.as_str().into(),
            ],
        )?;
    }
    tx.commit()?;
    Ok(Ok(record))
}

/// Whether a self-service claim may register `device_id` now: fewer than
/// `limit` devices were registered that way in the hour before `now`; if so
/// it is counted. The bound on how fast someone who makes up device keys can
/// add devices (each earns as a real meter would) under `policy = "open"`.
/// Counted in the claim's transaction, which every other binding change waits
/// for (the write lock, or [`BINDINGS_LOCK`]), so racing claims cannot pass it
/// together; kept in the store, so a restart does not reset it.
fn self_registered(tx: &dyn Sql, device_id: &str, limit: u64, now: u64) -> Result<bool, SqlError> {
    let since = now.saturating_sub(3600) as i64;
    let recent = tx
        .row(
            "SELECT COUNT(*) FROM self_registered WHERE at > ?1",
            &[Val::Int(since)],
        )?
        .map_or(Ok(0), |r| r[0].int(0))?;
    if recent as u64 >= limit {
        return Ok(false);
    }
    tx.exec(
        "INSERT INTO self_registered (device_id, at) VALUES (?1, ?2)",
        &[device_id.into(), Val::Int(now as i64)],
    )?;
    Ok(true)
}

fn write_device(tx: &dyn Sql, exists: bool, request: &ClaimRequest, now: u64) -> Result<(), SqlError> {
    if exists {
        tx.exec(
            "UPDATE devices SET owner = ?2 WHERE device_id = ?1",
            &[request.device_id.as_str().into(), request.owner.as_str().into()],
        )?;
    } else {
        tx.exec(
            "INSERT INTO devices (device_id, public_key, owner, registered_at) VALUES (?1, ?2, ?3, ?4)",
            &[
                request.device_id.as_str().into(),
                request.public_key.as_str().into(),
                request.owner.as_str().into(),
                Val::Int(now as i64),
            ],
        )?;
    }
    Ok(())
}

/// A device's records, oldest first.
pub(crate) fn records(conn: &dyn Sql, device_id: &str) -> Result<Vec<Record>, SqlError> {
    conn.rows(
        "SELECT record FROM bindings WHERE device_id = ?1 ORDER BY seq",
        &[device_id.into()],
    )?
    .iter()
    .map(|r| {
        serde_json::from_str(r[0].text(0)?).map_err(|e| SqlError::Malformed {
            col: 0,
            what: "binding record",
            value: e.to_string(),
        })
    })
    .collect()
}
