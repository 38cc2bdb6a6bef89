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
/// Most keys cached: enough for a replay's working set (every customer whose
/// tickets are spread over the history) at a few tens of bytes each (a
/// full cache of keys is under 20 MB). A full cache first drops what has
/// expired, then an arbitrary half of the rest: never everything at once.
pub const KEY_CACHE_ENTRIES: usize = 200_000;
/// Most customers' key ids cached, and most tickets whose key is known
/// ([`crate::SealedEvents`]); full, they shed entries as the keys' cache does.
pub const CACHE_ENTRIES: usize = 10_000;

/// The hasher of the caches' maps: foldhash, seeded per map. A replay looks
/// a key up per sealed field, and SipHash (the standard one) was several per
/// cent of a sealed replay's profile; foldhash keeps a random seed, so keys
/// chosen from outside (customers' names) cannot be aimed at one bucket.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// A map keyed by ids (keys', tickets'), with the caches' hasher.
pub(crate) type IdMap<V> = HashMap<Uuid, V, Hasher>;

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

    /// The keys with these ids that exist, in any order (a destroyed or
    /// unknown id is left out, a repeated one answered once or more): a
    /// replay's batch loads every key it misses in one call. Provided: one
    /// [`KeyStore::by_id`] after another; every real store overrides it with
    /// one query (or a few, for a long list).
    async fn by_ids(&self, key_ids: &[Uuid]) -> Result<Vec<StoredKey>, KeyError> {
        let mut found = Vec::with_capacity(key_ids.len());
        for &key_id in key_ids {
            found.extend(self.by_id(key_id).await?);
        }
        Ok(found)
    }

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
    keys: Mutex<Cache<Uuid, Option<DataKey>>>,
    customers: Mutex<Cache<String, Uuid>>,
}

impl Keyring {
    pub fn new(store: Arc<dyn KeyStore>, master: Option<MasterKey>) -> Self {
        Self {
            store,
            master,
            keys: Mutex::new(Cache::new(KEY_CACHE_ENTRIES, KEY_CACHE_TTL)),
            customers: Mutex::new(Cache::new(CACHE_ENTRIES, CUSTOMER_CACHE_TTL)),
        }
    }

    /// The customer's key, made and stored if it has none yet.
    pub async fn key_for(&self, customer: &str) -> Result<(Uuid, DataKey), KeyError> {
        if let Some(key_id) = lock(&self.customers).get(customer)
            && let Some(Some(key)) = lock(&self.keys).get(&key_id)
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
        lock(&self.customers).insert(customer.to_owned(), stored.key_id);
        lock(&self.keys).insert(stored.key_id, Some(key.clone()));
        Ok((stored.key_id, key))
    }

    /// The key with this id; `None` once it is destroyed.
    pub async fn key(&self, key_id: Uuid) -> Result<Option<DataKey>, KeyError> {
        if let Some(key) = lock(&self.keys).get(&key_id) {
            return Ok(key);
        }
        let key = match self.store.by_id(key_id).await? {
            Some(stored) => Some(self.load(&stored)?),
            None => None,
        };
        lock(&self.keys).insert(key_id, key.clone());
        Ok(key)
    }

    /// The keys with these ids (`None` for one destroyed), cached or loaded:
    /// every id not cached is loaded by one [`KeyStore::by_ids`].
    pub async fn keys(
        &self,
        key_ids: impl IntoIterator<Item = Uuid>,
    ) -> Result<IdMap<Option<DataKey>>, KeyError> {
        let mut found = IdMap::default();
        let mut missing = Vec::new();
        {
            let cache = lock(&self.keys);
            let now = Instant::now();
            for key_id in key_ids {
                if found.contains_key(&key_id) {
                    continue;
                }
                match cache.get_at(&key_id, now) {
                    Some(key) => {
                        found.insert(key_id, key);
                    }
                    None => {
                        found.insert(key_id, None);
                        missing.push(key_id);
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let mut loaded = Vec::new();
        for stored in self.store.by_ids(&missing).await? {
            if let Some(slot) = found.get_mut(&stored.key_id) {
                let key = self.load(&stored)?;
                *slot = Some(key.clone());
                loaded.push((stored.key_id, Some(key)));
            }
        }
        let mut cache = lock(&self.keys);
        for (key_id, key) in loaded {
            cache.insert(key_id, key);
        }
        // An id asked for and not found is destroyed (or never was).
        for key_id in missing {
            if found.get(&key_id).is_some_and(Option::is_none) {
                cache.insert(key_id, None);
            }
        }
        Ok(found)
    }

    /// The id of the customer's key, if it has one (read from the store).
    pub async fn find(&self, customer: &str) -> Result<Option<Uuid>, KeyError> {
        Ok(self.store.by_customer(customer).await?.map(|k| k.key_id))
    }

    /// Destroys the key, here and in the store; whether the store had it.
    pub async fn destroy(&self, key_id: Uuid) -> Result<bool, KeyError> {
        let destroyed = self.store.destroy(key_id).await?;
        lock(&self.keys).insert(key_id, None);
        lock(&self.customers)
            .entries
            .retain(|_, (id, _)| *id != key_id);
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

/// A cache bounded in entries and in age: an entry older than its `ttl` is
/// never answered. Full, it drops what has expired, then, if that freed
/// less than a quarter, every other entry left (in the map's order, which
/// is unrelated to age or use): amortised, an insert stays O(1), and the
/// rest stays cached.
#[derive(Debug)]
pub(crate) struct Cache<K, V> {
    entries: HashMap<K, (V, Instant), Hasher>,
    capacity: usize,
    ttl: Duration,
}

impl<K: std::hash::Hash + Eq, V: Clone> Cache<K, V> {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: HashMap::with_hasher(Hasher::default()),
            capacity,
            ttl,
        }
    }

    /// The value, unless it is older than the cache's age bound.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.get_at(key, Instant::now())
    }

    /// [`Cache::get`] as of `now` (one clock reading for many lookups).
    pub(crate) fn get_at<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let (value, at) = self.entries.get(key)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| value.clone())
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.make_room();
        }
        self.entries.insert(key, (value, Instant::now()));
    }

    fn make_room(&mut self) {
        let ttl = self.ttl;
        self.entries.retain(|_, (_, at)| at.elapsed() < ttl);
        if self.entries.len() > self.capacity / 4 * 3 {
            let mut keep = false;
            self.entries.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_cache_sheds_the_expired_then_half_never_everything() {
        let ttl = Duration::from_secs(5);
        let mut cache = Cache::new(100, ttl);
        for n in 0..100 {
            cache.insert(n, n);
        }
        assert_eq!(cache.len(), 100);
        cache.insert(100, 100);
        assert_eq!(
            cache.len(),
            51,
            "half of the full cache kept, and the new entry"
        );
        assert_eq!(cache.get(&100), Some(100));
        let kept = (0..100).filter(|n| cache.get(n).is_some()).count();
        assert_eq!(kept, 50);
        tokio::time::advance(ttl).await;
        assert_eq!(cache.get(&100), None, "expired: never answered");
        for n in 200..249 {
            cache.insert(n, n);
        }
        assert_eq!(cache.len(), 100);
        cache.insert(1000, 1000);
        assert_eq!(
            cache.len(),
            50,
            "the 51 expired entries go first, and nothing fresh is dropped"
        );
        assert!((200..249).all(|n| cache.get(&n) == Some(n)));
    }
}
