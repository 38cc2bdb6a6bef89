//! Customers' data keys: the store contract each backend implements, and the
//! [`Keyring`] in front of it that makes, loads, caches and destroys them.
//!
//! A key is made on a customer's first ticket and stored apart from the
//! events, with the customer's name beside it (to find it for the next
//! ticket). Destroying it is the erasure: the key and the name go, and every
//! value sealed with it is unreadable from then on.
//!
//! Reads are cached per process with a bound on entries and on age: a key
//! for [`KEY_CACHE_TTL`], a customer's key id for [`CUSTOMER_CACHE_TTL`]. So
//! another process stops opening an erased customer's values within
//! seconds; the shorter second bound keeps small the window in which another
//! process could seal a new ticket of a customer erased meanwhile with the
//! destroyed key (its fields would then read as erased).

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use uuid::Uuid;

use crate::cipher::{self, CipherError, DataKey, MasterKey};

/// How long a loaded key (or the news that it is destroyed) is reused.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// How long a customer's key id is reused.
pub const CUSTOMER_CACHE_TTL: Duration = Duration::from_secs(1);
/// Most entries of each cache; a full cache is emptied and refilled.
pub const CACHE_ENTRIES: usize = 10_000;

/// A data key as a store holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub key_id: Uuid,
    pub customer: String,
    /// The key's bytes, raw or wrapped by the master key.
    pub material: Vec<u8>,
}

impl Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// What a key operation can end in, besides success.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store could not be reached or failed; retry.
    #[error("key store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored key that cannot be used as it is.
    #[error("key {key_id}: {source}")]
    Unusable {
        key_id: Uuid,
        #[source]
        source: CipherError,
    },
    /// Stored data breaks an invariant.
    #[error("key store data is corrupt: {0}")]
    Corrupt(String),
}

/// Where data keys are kept: one per customer, apart from the events.
#[async_trait]
pub trait KeyStore: Send + Sync + Debug {
    /// The customer's key, if it has one.
    async fn by_customer(&self, customer: &str) -> Result<Option<StoredKey>, KeyError>;

    /// The key with this id, unless it was destroyed (or never was).
    async fn by_id(&self, key_id: Uuid) -> Result<Option<StoredKey>, KeyError>;

    /// Stores `key` unless its customer has a key already; returns the
    /// customer's key either way (two first tickets of one customer at once
    /// both end up with the same key).
    async fn create(&self, key: StoredKey) -> Result<StoredKey, KeyError>;

    /// Destroys the key; whether there was one.
    async fn destroy(&self, key_id: Uuid) -> Result<bool, KeyError>;

    /// Leaves no copy of deleted or overwritten content in the store's
    /// files, now rather than when the store gets round to it: after an
    /// erasure, once the read models have rewritten the customer's rows.
    /// Provided: nothing to do (a server that manages its own files).
    async fn scrub(&self) -> Result<(), KeyError> {
        Ok(())
    }
}

/// Makes, loads, caches and destroys data keys (see the module doc).
#[derive(Debug)]
pub struct Keyring {
    store: Arc<dyn KeyStore>,
    master: Option<MasterKey>,
    keys: Mutex<HashMap<Uuid, (Option<DataKey>, Instant)>>,
    customers: Mutex<HashMap<String, (Uuid, Instant)>>,
}

impl Keyring {
    pub fn new(store: Arc<dyn KeyStore>, master: Option<MasterKey>) -> Self {
        Self {
            store,
            master,
            keys: Mutex::new(HashMap::new()),
            customers: Mutex::new(HashMap::new()),
        }
    }

    /// The customer's key, made and stored if it has none yet.
    pub async fn key_for(&self, customer: &str) -> Result<(Uuid, DataKey), KeyError> {
        if let Some(key_id) = cached(&self.customers, customer, CUSTOMER_CACHE_TTL)
            && let Some(Some(key)) = cached(&self.keys, &key_id, KEY_CACHE_TTL)
        {
            return Ok((key_id, key));
        }
        let stored = match self.store.by_customer(customer).await? {
            Some(stored) => stored,
            None => {
                let key_id = Uuid::now_v7();
                let material = cipher::store(
                    &DataKey::generate(),
                    self.master.as_ref(),
                    &key_id.to_string(),
                );
                self.store
                    .create(StoredKey {
                        key_id,
                        customer: customer.to_owned(),
                        material,
                    })
                    .await?
            }
        };
        let key = self.load(&stored)?;
        remember(&self.customers, customer.to_owned(), stored.key_id);
        remember(&self.keys, stored.key_id, Some(key.clone()));
        Ok((stored.key_id, key))
    }

    /// The key with this id; `None` once it is destroyed.
    pub async fn key(&self, key_id: Uuid) -> Result<Option<DataKey>, KeyError> {
        if let Some(key) = cached(&self.keys, &key_id, KEY_CACHE_TTL) {
            return Ok(key);
        }
        let key = match self.store.by_id(key_id).await? {
            Some(stored) => Some(self.load(&stored)?),
            None => None,
        };
        remember(&self.keys, key_id, key.clone());
        Ok(key)
    }

    /// The id of the customer's key, if it has one (read from the store).
    pub async fn find(&self, customer: &str) -> Result<Option<Uuid>, KeyError> {
        Ok(self.store.by_customer(customer).await?.map(|k| k.key_id))
    }

    /// Destroys the key, here and in the store; whether the store had it.
    pub async fn destroy(&self, key_id: Uuid) -> Result<bool, KeyError> {
        let destroyed = self.store.destroy(key_id).await?;
        remember(&self.keys, key_id, None);
        lock(&self.customers).retain(|_, (id, _)| *id != key_id);
        Ok(destroyed)
    }

    fn load(&self, stored: &StoredKey) -> Result<DataKey, KeyError> {
        cipher::load(
            &stored.material,
            self.master.as_ref(),
            &stored.key_id.to_string(),
        )
        .map_err(|source| KeyError::Unusable {
            key_id: stored.key_id,
            source,
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A cache is consistent whatever panicked while it was held: every
    // change is one insert, removal or clear.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cached<K, Q, V>(cache: &Mutex<HashMap<K, (V, Instant)>>, key: &Q, ttl: Duration) -> Option<V>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
    V: Clone,
{
    let cache = lock(cache);
    let (value, at) = cache.get(key)?;
    (at.elapsed() < ttl).then(|| value.clone())
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &Mutex<HashMap<K, (V, Instant)>>, key: K, value: V) {
    let mut cache = lock(cache);
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key, (value, Instant::now()));
}
