//! The device registry as the ingest path sees it: an in-memory map from device
//! id to status, loaded from the store at start and updated after each committed
//! register or revoke. Lookups on the hot path take a read lock and no I/O.

use std::collections::HashMap;
use std::sync::RwLock;

use wattstream_sdk::DeviceId;

use crate::store::DeviceRow;

/// What ingest needs to know of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    pub owner: Option<String>,
    pub revoked: bool,
}

/// The registry cache.
#[derive(Default)]
pub struct Registry {
    devices: RwLock<HashMap<DeviceId, DeviceStatus>>,
}

impl Registry {
    /// From the store's rows.
    pub fn from_rows(rows: &[DeviceRow]) -> Self {
        let map = rows
            .iter()
            .filter_map(|r| {
                let id = DeviceId::from_hex(&r.device_id)?;
                Some((
                    id,
                    DeviceStatus {
                        owner: r.owner.clone(),
                        revoked: r.revoked_at.is_some(),
                    },
                ))
            })
            .collect();
        Registry {
            devices: RwLock::new(map),
        }
    }

    /// The status of a device, `None` when it was never registered.
    pub fn get(&self, id: &DeviceId) -> Option<DeviceStatus> {
        self.devices.read().expect("registry lock").get(id).cloned()
    }

    /// Records a committed registration (or owner change).
    pub fn registered(&self, id: DeviceId, owner: Option<String>) {
        let mut map = self.devices.write().expect("registry lock");
        let entry = map.entry(id).or_insert(DeviceStatus {
            owner: None,
            revoked: false,
        });
        if owner.is_some() {
            entry.owner = owner;
        }
    }

    /// Records a committed owner change from a binding (none: unbound).
    pub fn set_owner(&self, id: DeviceId, owner: Option<String>) {
        self.devices
            .write()
            .expect("registry lock")
            .entry(id)
            .or_insert(DeviceStatus {
                owner: None,
                revoked: false,
            })
            .owner = owner;
    }

    /// Records a committed revocation.
    pub fn revoked(&self, id: &DeviceId) {
        if let Some(d) = self.devices.write().expect("registry lock").get_mut(id) {
            d.revoked = true;
        }
    }

    /// Sets a device's status to what the store holds (a change another
    /// processor made).
    pub fn refresh(&self, row: &DeviceRow) {
        let Some(id) = DeviceId::from_hex(&row.device_id) else {
            return;
        };
        self.devices.write().expect("registry lock").insert(
            id,
            DeviceStatus {
                owner: row.owner.clone(),
                revoked: row.revoked_at.is_some(),
            },
        );
    }

    /// Number of devices known, revoked ones included.
    pub fn len(&self) -> usize {
        self.devices.read().expect("registry lock").len()
    }

    /// Whether no device is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
