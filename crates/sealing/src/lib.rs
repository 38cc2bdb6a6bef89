//! Crypto-shredding: each customer's personal fields are sealed at rest with
//! a data key of the customer's own, kept apart from the events; destroying
//! the key forgets the customer without touching the immutable log.
//!
//! - [`cipher`]: AES-256-GCM sealing of one field, and data keys wrapped by
//!   an optional master key.
//! - [`keys`]: the [`KeyStore`] contract each backend implements, and the
//!   [`Keyring`] (make, load, cache with a bound, destroy).
//! - [`sealed`]: [`SealedEvents`], the event-store decorator that seals on
//!   append and opens on read, so the rest of the system sees plain events.

pub mod cipher;
pub mod keys;
pub mod sealed;

pub use cipher::{CipherError, DataKey, MasterKey};
pub use keys::{KeyError, KeyStore, Keyring, StoredKey};
pub use sealed::{SealedEvents, is_sealed, personal_fields, sealed_key};
