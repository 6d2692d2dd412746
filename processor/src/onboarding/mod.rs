//! Self-service onboarding: a device and its owner's wallet bind themselves,
//! and each binding is a record anyone can re-verify ([`record`]).
//!
//! A claim joins a device to an owner when both sides signed the same
//! message: the device with its P-256 key (`power-meter bind`), the owner's
//! wallet with EIP-191 `personal_sign` ([`wallet`]). Who may claim is the
//! policy ([`Policy`]). A transfer or unbinding needs the current owner's
//! signature or the admin token; a transfer also needs the new owner's, so
//! rewards never go to an address nobody answers for.
//!
//! Checks run in two places on purpose. Everything that needs no state (forms,
//! signatures, chain id, age, the maker certificate) runs here before the
//! store is touched. Everything that depends on state (the nonce never seen,
//! the device free or owned by the signer, not revoked) runs in [`store`] in
//! the transaction that appends the record, so two racing requests cannot both
//! pass.

pub mod record;
pub(crate) mod store;
pub mod wallet;

use std::sync::Arc;

use serde::Deserialize;
use wattstream_sdk::PublicKey;
use wattstream_sdk::binding::{BindingError, ClaimRequest, TransferRequest};

use crate::rewards::Conns;
pub use record::{Authority, Record, Span};
pub use wallet::WalletError;

/// Who may claim a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Only the admin (claims need the admin token; `device add` as before).
    #[default]
    Admin,
    /// Any device with a valid two-sided binding.
    Open,
    /// Devices whose key carries a certificate from one of `makers`.
    Makers,
}

/// `[onboarding]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnboardingConfig {
    pub policy: Policy,
    /// The EVM chain owners' addresses are on; requests for another are refused.
    pub chain_id: u64,
    /// Maker public keys (SEC1 hex) trusted under `policy = "makers"`.
    pub makers: Vec<String>,
    /// Oldest request accepted, seconds.
    pub max_age_s: u64,
    /// How far ahead of this processor's clock a request may be dated, seconds.
    pub max_future_s: u64,
    /// Under `policy = "open"`, how many devices claims without the admin
    /// token may register in any hour (sliding: counted over the 3,600 s
    /// before each claim). 0: they may only claim devices already registered.
    pub open_new_devices_per_hour: u64,
}

impl Default for OnboardingConfig {
    fn default() -> Self {
        OnboardingConfig {
            policy: Policy::Admin,
            chain_id: 1337,
            makers: Vec::new(),
            max_age_s: 86_400,
            max_future_s: 300,
            open_new_devices_per_hour: 100,
        }
    }
}

/// Why a binding was refused; nothing changed. Each has a stable reason code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OnboardError {
    #[error("{0}")]
    Form(#[from] BindingError),
    #[error("{0}")]
    Wallet(#[from] WalletError),
    #[error("the {role} signature is by {signer}, not {expected}")]
    WrongSigner {
        role: &'static str,
        signer: String,
        expected: String,
    },
    #[error("the request is for chain {got}; this processor binds owners on chain {expected}")]
    WrongChain { expected: u64, got: u64 },
    #[error("the request was made at {issued_at}, more than {max_age_s} s ago")]
    Expired { issued_at: u64, max_age_s: u64 },
    #[error("the request is dated {issued_at}, ahead of this processor's clock")]
    FromFuture { issued_at: u64 },
    #[error("this request's nonce was used before: a request binds at most once")]
    NonceReused,
    #[error("device {0} already has an owner; a transfer needs the current owner's signature")]
    AlreadyBound(String),
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    #[error("device {0} was revoked")]
    Revoked(String),
    #[error("device {device} is owned by {owner}, not {from}")]
    NotCurrentOwner {
        device: String,
        owner: String,
        from: String,
    },
    #[error("the maker {0} is not one this processor trusts")]
    UnknownMaker(String),
    #[error("the onboarding policy is `makers` and the request carries no maker certificate")]
    MakerRequired,
    #[error("the onboarding policy is `admin`: claims need the admin token")]
    Closed,
    #[error("a {0} needs the current owner's signature (`from_signature`) or the admin token")]
    FromSignatureRequired(&'static str),
    #[error("a transfer needs the new owner's signature (`owner_signature`) as consent")]
    ConsentRequired,
    #[error(
        "device {device} is not registered, and self-service claims have registered {limit} devices in the last hour \
         (onboarding.open_new_devices_per_hour); try later, or ask the operator"
    )]
    NewDeviceLimit { device: String, limit: u64 },
}

impl OnboardError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            OnboardError::Form(e) => e.code(),
            OnboardError::Wallet(_) => "bad_owner_signature",
            OnboardError::WrongSigner { .. } => "owner_signature_mismatch",
            OnboardError::WrongChain { .. } => "wrong_chain",
            OnboardError::Expired { .. } => "request_expired",
            OnboardError::FromFuture { .. } => "request_from_future",
            OnboardError::NonceReused => "nonce_reused",
            OnboardError::AlreadyBound(_) => "already_bound",
            OnboardError::UnknownDevice(_) => "unknown_device",
            OnboardError::Revoked(_) => "revoked_device",
            OnboardError::NotCurrentOwner { .. } => "not_current_owner",
            OnboardError::UnknownMaker(_) => "unknown_maker",
            OnboardError::MakerRequired => "maker_certificate_required",
            OnboardError::Closed => "onboarding_closed",
            OnboardError::FromSignatureRequired(_) => "from_signature_required",
            OnboardError::ConsentRequired => "owner_signature_required",
            OnboardError::NewDeviceLimit { .. } => "new_device_limit",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            OnboardError::NonceReused
            | OnboardError::AlreadyBound(_)
            | OnboardError::Revoked(_)
            | OnboardError::NotCurrentOwner { .. } => 409,
            OnboardError::UnknownDevice(_) => 404,
            OnboardError::UnknownMaker(_) | OnboardError::MakerRequired | OnboardError::Closed => 403,
            OnboardError::FromSignatureRequired(_) => 401,
            OnboardError::NewDeviceLimit { .. } => 429,
            _ => 400,
        }
    }
}

/// A change the store appends, after the stateless checks passed.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Claim {
        request: ClaimRequest,
        owner_signature: String,
        /// How many devices self-service claims may register per hour, when
        /// this claim is one (`policy = "open"`, no admin token).
        new_devices_per_hour: Option<u64>,
    },
    Transfer {
        request: TransferRequest,
        from_signature: Option<String>,
        owner_signature: Option<String>,
    },
}

/// The bindings service: checks, then appends through the store.
pub struct Onboarding {
    config: OnboardingConfig,
    makers: Vec<PublicKey>,
    epoch_s: u64,
    conns: Arc<Conns>,
}

impl Onboarding {
    pub fn new(config: OnboardingConfig, epoch_s: u64, conns: Arc<Conns>) -> anyhow::Result<Self> {
        let makers = config
            .makers
            .iter()
            .map(|m| PublicKey::from_hex(m).map_err(|e| anyhow::anyhow!("onboarding.makers: `{m}`: {e}")))
            .collect::<anyhow::Result<_>>()?;
        Ok(Onboarding {
            config,
            makers,
            epoch_s: epoch_s.max(1),
            conns,
        })
    }

    fn check_time(&self, chain_id: u64, issued_at: u64, now: u64) -> Result<(), OnboardError> {
        if chain_id != self.config.chain_id {
            return Err(OnboardError::WrongChain {
                expected: self.config.chain_id,
                got: chain_id,
            });
        }
        if issued_at > now + self.config.max_future_s {
            return Err(OnboardError::FromFuture { issued_at });
        }
        if issued_at + self.config.max_age_s < now {
            return Err(OnboardError::Expired {
                issued_at,
                max_age_s: self.config.max_age_s,
            });
        }
        Ok(())
    }

    fn signed_by(
        message: &str,
        signature: &str,
        role: &'static str,
        expected: &str,
    ) -> Result<(), OnboardError> {
        let signer = wallet::signer(message, signature)?;
        if signer != expected {
            return Err(OnboardError::WrongSigner {
                role,
                signer: wallet::checksummed(&signer),
                expected: wallet::checksummed(expected),
            });
        }
        Ok(())
    }

    /// A claim: the stateless checks, then the store's. `admin` says whether
    /// the caller showed the admin token.
    pub fn claim(
        &self,
        request: ClaimRequest,
        owner_signature: String,
        admin: bool,
        now: u64,
    ) -> Result<Result<Record, OnboardError>, anyhow::Error> {
        let checked = (|| {
            if self.config.policy == Policy::Admin && !admin {
                return Err(OnboardError::Closed);
            }
            let (_, maker) = request.verify_device_side()?;
            self.check_time(request.chain_id, request.issued_at, now)?;
            if self.config.policy == Policy::Makers {
                let maker = maker.ok_or(OnboardError::MakerRequired)?;
                if !self.makers.contains(&maker) {
                    return Err(OnboardError::UnknownMaker(maker.to_hex()));
                }
            }
            Self::signed_by(&request.owner_message, &owner_signature, "owner", &request.owner)
        })();
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        let self_service = self.config.policy == Policy::Open && !admin;
        self.append(
            Change::Claim {
                request,
                owner_signature,
                new_devices_per_hour: self_service.then_some(self.config.open_new_devices_per_hour),
            },
            now,
        )
    }

    /// A transfer (or, with no `to`, an unbinding).
    pub fn transfer(
        &self,
        request: TransferRequest,
        from_signature: Option<String>,
        owner_signature: Option<String>,
        admin: bool,
        now: u64,
    ) -> Result<Result<Record, OnboardError>, anyhow::Error> {
        let what = if request.to.is_some() {
            "transfer"
        } else {
            "unbinding"
        };
        let checked = (|| {
            request.check_form()?;
            self.check_time(request.chain_id, request.issued_at, now)?;
            match &from_signature {
                Some(sig) => Self::signed_by(&request.owner_message, sig, "current owner", &request.from)?,
                None if admin => {}
                None => return Err(OnboardError::FromSignatureRequired(what)),
            }
            match (&request.to, &owner_signature) {
                (Some(to), Some(sig)) => Self::signed_by(&request.owner_message, sig, "new owner", to),
                (Some(_), None) => Err(OnboardError::ConsentRequired),
                (None, _) => Ok(()),
            }
        })();
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        let owner_signature = if request.to.is_some() {
            owner_signature
        } else {
            None
        };
        self.append(
            Change::Transfer {
                request,
                from_signature,
                owner_signature,
            },
            now,
        )
    }

    fn append(&self, change: Change, now: u64) -> anyhow::Result<Result<Record, OnboardError>> {
        let epoch = now / self.epoch_s;
        Ok(self.conns.book(|c| store::append(c, change, epoch, now))?)
    }

    /// A device's records, oldest first.
    pub fn records(&self, device_id: &str) -> anyhow::Result<Vec<Record>> {
        Ok(self.conns.read(|c| store::records(c, device_id))?)
    }
}
