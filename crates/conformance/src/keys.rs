//! The key store contract ([`sealing::KeyStore`]): customers' data keys, one
//! per customer, kept as given, found by customer and by id, created once
//! however many first tickets race, and gone for good once destroyed. A
//! backend runs these cases with [`key_contract_tests!`](crate::key_contract_tests),
//! giving each case a fresh, empty store and a way to open its data again
//! ([`KeyStores`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sealing::{KeyStore, StoredKey};
use uuid::Uuid;

type Reopened = Pin<Box<dyn Future<Output = Arc<dyn KeyStore>> + Send>>;

/// What a key case gets from a backend: a fresh, empty store, and how to
/// open the same data afresh, as a restart or another process would, with
/// nothing shared in memory.
pub struct KeyStores {
    pub store: Arc<dyn KeyStore>,
    reopen: Box<dyn Fn() -> Reopened + Send + Sync>,
}

impl std::fmt::Debug for KeyStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStores")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl KeyStores {
    /// `store`, and `reopen` opening its data again (panicking if it cannot).
    pub fn new<S, R, F>(store: S, reopen: R) -> KeyStores
    where
        S: KeyStore + 'static,
        R: Fn() -> F + Send + Sync + 'static,
        F: Future<Output = S> + Send + 'static,
    {
        KeyStores {
            store: Arc::new(store),
            reopen: Box::new(move || {
                let opened = reopen();
                Box::pin(async move { Arc::new(opened.await) as Arc<dyn KeyStore> })
            }),
        }
    }

    /// A new store on the same data.
    pub async fn reopen(&self) -> Arc<dyn KeyStore> {
        (self.reopen)().await
    }
}

/// The two sizes a key's material has: the raw 32-byte key, or 60 bytes
/// when a master key wraps it (nonce, wrapped key, tag).
const RAW: usize = 32;
const WRAPPED: usize = 60;

/// A key for `customer` with `len` bytes of material derived from its id:
/// every byte value shows up across keys (zeros, 0xff, bytes that are not
/// UTF-8), and no two keys share their material.
fn key(customer: &str, len: usize) -> StoredKey {
    let key_id = Uuid::now_v7();
    let seed = key_id.as_bytes();
    let material = (0..len)
        .map(|i| match i {
            0 => 0x00,
            1 => 0xff,
            _ => seed[i % seed.len()].wrapping_mul(31).wrapping_add(i as u8),
        })
        .collect();
    StoredKey {
        key_id,
        customer: customer.to_owned(),
        material,
    }
}

/// `read` is `sent` as stored: the same id, customer and material bytes.
/// (A key's `Debug` hides its material, so the bytes are compared here.)
#[track_caller]
fn assert_key(read: &StoredKey, sent: &StoredKey, what: &str) {
    assert_eq!(read.key_id, sent.key_id, "{what}: the key id");
    assert_eq!(read.customer, sent.customer, "{what}: the customer");
    assert!(
        read.material == sent.material,
        "{what}: the material of {} is {} bytes {:02x?}, stored {} bytes {:02x?}",
        sent.key_id,
        read.material.len(),
        read.material,
        sent.material.len(),
        sent.material,
    );
}

async fn create(store: &dyn KeyStore, key: &StoredKey) -> StoredKey {
    store
        .create(key.clone())
        .await
        .unwrap_or_else(|e| panic!("creating a key for {:?}: {e}", key.customer))
}

async fn by_customer(store: &dyn KeyStore, customer: &str) -> Option<StoredKey> {
    store
        .by_customer(customer)
        .await
        .unwrap_or_else(|e| panic!("the key of {customer:?}: {e}"))
}

async fn by_id(store: &dyn KeyStore, key_id: Uuid) -> Option<StoredKey> {
    store
        .by_id(key_id)
        .await
        .unwrap_or_else(|e| panic!("key {key_id}: {e}"))
}

async fn destroy(store: &dyn KeyStore, key_id: Uuid) -> bool {
    store
        .destroy(key_id)
        .await
        .unwrap_or_else(|e| panic!("destroying key {key_id}: {e}"))
}

/// Finds `key` by its customer and by its id, as stored.
async fn assert_found(store: &dyn KeyStore, key: &StoredKey, what: &str) {
    let found = by_customer(store, &key.customer)
        .await
        .unwrap_or_else(|| panic!("{what}: {:?} has no key", key.customer));
    assert_key(&found, key, &format!("{what}, by customer"));
    let found = by_id(store, key.key_id)
        .await
        .unwrap_or_else(|| panic!("{what}: key {} is not found by its id", key.key_id));
    assert_key(&found, key, &format!("{what}, by id"));
}

/// A created key comes back as created, by its customer and by its id,
/// material byte for byte, raw (32 bytes) and wrapped (60); a customer is
/// matched by its exact name, and an unknown customer or id finds nothing.
pub async fn created_keys_are_found_by_customer_and_id(keys: &KeyStores) {
    let store = &*keys.store;
    let raw = key("acme", RAW);
    let wrapped = key("Émile & Co 🔑", WRAPPED);
    assert_eq!(by_customer(store, "acme").await, None, "an empty store");
    assert_eq!(by_id(store, raw.key_id).await, None, "an empty store");
    for sent in [&raw, &wrapped] {
        let created = create(store, sent).await;
        assert_key(&created, sent, "create answers the key it stored");
    }
    assert_found(store, &raw, "the raw key").await;
    assert_found(store, &wrapped, "the wrapped key").await;
    for other in ["ACME", "acm", "acme ", "Émile & Co"] {
        assert_eq!(
            by_customer(store, other).await,
            None,
            "{other:?} is another customer"
        );
    }
    assert_eq!(
        by_id(store, Uuid::now_v7()).await,
        None,
        "an id no key has finds nothing"
    );
}

/// `by_ids` answers the keys with the ids asked for that exist, as stored,
/// each once (whatever the order, repeats, destroyed or unknown ids among
/// them); nothing for no ids; and it goes past one query's worth of ids
/// (1,200 keys, more than SQLite's smallest limit on bound variables).
pub async fn keys_are_found_by_many_ids_at_once(keys: &KeyStores) {
    let store = &*keys.store;
    let made: Vec<StoredKey> = (0..1_200)
        .map(|n| {
            key(
                &format!("customer {n}"),
                if n % 2 == 0 { RAW } else { WRAPPED },
            )
        })
        .collect();
    for key in &made {
        create(store, key).await;
    }
    let gone = &made[7];
    assert!(destroy(store, gone.key_id).await);
    let by_ids = |ids: Vec<Uuid>| async move {
        let mut found = store
            .by_ids(&ids)
            .await
            .unwrap_or_else(|e| panic!("{} keys by id: {e}", ids.len()));
        found.sort_by_key(|key| key.key_id);
        found.dedup_by_key(|key| key.key_id);
        found
    };
    assert_eq!(by_ids(Vec::new()).await, Vec::new(), "no ids, no keys");
    // Every key but the destroyed one, in reverse order, with an unknown id,
    // the destroyed one and a repeat among them.
    let mut ids: Vec<Uuid> = made.iter().rev().map(|key| key.key_id).collect();
    ids.insert(3, Uuid::now_v7());
    ids.insert(600, made[0].key_id);
    let found = by_ids(ids).await;
    let mut expected: Vec<&StoredKey> = made
        .iter()
        .filter(|key| key.key_id != gone.key_id)
        .collect();
    expected.sort_by_key(|key| key.key_id);
    assert_eq!(found.len(), expected.len(), "every key there is, once");
    for (read, sent) in found.iter().zip(expected) {
        assert_key(read, sent, "by_ids");
    }
    let few = by_ids(vec![made[3].key_id, gone.key_id, made[1].key_id]).await;
    assert_eq!(few.len(), 2, "the destroyed key is not found");
    for read in &few {
        let sent = if read.key_id == made[3].key_id {
            &made[3]
        } else {
            &made[1]
        };
        assert_key(read, sent, "by_ids, a few");
    }
    assert_eq!(
        by_ids(vec![Uuid::now_v7(), gone.key_id]).await,
        Vec::new(),
        "only ids no key has"
    );
}

/// A create for a customer who has a key stores nothing and answers the key
/// the customer has; the refused key's id finds nothing.
pub async fn a_customers_key_is_created_once(keys: &KeyStores) {
    let store = &*keys.store;
    let first = key("acme", RAW);
    create(store, &first).await;
    for second in [key("acme", RAW), key("acme", WRAPPED)] {
        let answered = create(store, &second).await;
        assert_key(&answered, &first, "a second create answers the first key");
        assert_eq!(
            by_id(store, second.key_id).await,
            None,
            "the second key is not stored"
        );
    }
    assert_found(store, &first, "the first key, kept").await;
}

/// Concurrent first creates for one customer (two first tickets at once)
/// all answer the same key, one of those sent, and it is the one stored;
/// the others' ids find nothing.
pub async fn concurrent_creates_for_one_customer_share_one_key(keys: &KeyStores) {
    const WRITERS: usize = 8;
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = tokio::task::JoinSet::new();
    let sent: Vec<StoredKey> = (0..WRITERS)
        .map(|writer| key("shared", if writer % 2 == 0 { RAW } else { WRAPPED }))
        .collect();
    for (writer, key) in sent.iter().cloned().enumerate() {
        let store = Arc::clone(&keys.store);
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            barrier.wait().await;
            let outcome = store.create(key).await;
            (writer, outcome)
        });
    }
    let mut answered = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (writer, outcome) = joined.expect("a create panicked");
        answered.push(outcome.unwrap_or_else(|e| panic!("writer {writer}: {e}")));
    }
    let winner = sent
        .iter()
        .find(|key| key.key_id == answered[0].key_id)
        .unwrap_or_else(|| panic!("the answered key {} was never sent", answered[0].key_id));
    for key in &answered {
        assert_key(key, winner, "every create answers the same key");
    }
    let store = &*keys.store;
    assert_found(store, winner, "the one stored").await;
    for loser in sent.iter().filter(|key| key.key_id != winner.key_id) {
        assert_eq!(
            by_id(store, loser.key_id).await,
            None,
            "a key that lost the race is not stored"
        );
    }
}

/// Destroying answers true once, then false; the key is then found neither
/// by id nor by customer, other keys are untouched, an unknown id destroys
/// nothing, and the customer's next create stores a new key.
pub async fn destroying_a_key_is_once_and_forgets_it(keys: &KeyStores) {
    let store = &*keys.store;
    let gone = key("acme", WRAPPED);
    let kept = key("globex", RAW);
    create(store, &gone).await;
    create(store, &kept).await;
    assert!(
        !destroy(store, Uuid::now_v7()).await,
        "an unknown id destroys nothing"
    );
    assert!(destroy(store, gone.key_id).await, "the first destroy");
    assert!(
        !destroy(store, gone.key_id).await,
        "a second destroy finds nothing"
    );
    assert_eq!(by_id(store, gone.key_id).await, None, "gone by id");
    assert_eq!(by_customer(store, "acme").await, None, "gone by customer");
    assert_found(store, &kept, "the other key, untouched").await;
    let renewed = key("acme", WRAPPED);
    let answered = create(store, &renewed).await;
    assert_key(
        &answered,
        &renewed,
        "after a destroy, the customer's create stores the new key",
    );
    assert_ne!(answered.key_id, gone.key_id, "a new key id");
    assert_found(store, &renewed, "the customer's new key").await;
    assert_eq!(
        by_id(store, gone.key_id).await,
        None,
        "the destroyed key stays gone"
    );
    assert!(!destroy(store, gone.key_id).await);
}

/// Keys and their destruction are in the store's data, not the instance: a
/// store opened afresh finds the kept keys as written, not the destroyed
/// ones, and still creates a customer's key only once.
pub async fn keys_survive_reopening(keys: &KeyStores) {
    let kept = key("acme", RAW);
    let wrapped = key("initech", WRAPPED);
    let gone = key("globex", RAW);
    for key in [&kept, &wrapped, &gone] {
        create(&*keys.store, key).await;
    }
    assert!(destroy(&*keys.store, gone.key_id).await);
    let reopened = keys.reopen().await;
    let reopened = &*reopened;
    assert_found(reopened, &kept, "reopened").await;
    assert_found(reopened, &wrapped, "reopened").await;
    assert_eq!(by_id(reopened, gone.key_id).await, None, "still destroyed");
    assert_eq!(
        by_customer(reopened, "globex").await,
        None,
        "still destroyed"
    );
    assert!(!destroy(reopened, gone.key_id).await, "destroyed once");
    let answered = create(reopened, &key("acme", WRAPPED)).await;
    assert_key(&answered, &kept, "acme's key is still the one it has");
}

/// A scrub succeeds, on an empty store and after keys are created and
/// destroyed, and leaves the kept keys as they were.
pub async fn scrub_succeeds_and_keeps_the_keys(keys: &KeyStores) {
    let store = &*keys.store;
    store.scrub().await.expect("scrubbing an empty store");
    let kept = key("acme", WRAPPED);
    let gone = key("globex", RAW);
    create(store, &kept).await;
    create(store, &gone).await;
    assert!(destroy(store, gone.key_id).await);
    // A reader that has just read (and so holds a pooled connection) must
    // not stop the scrub.
    assert_found(store, &kept, "before the scrub").await;
    store
        .scrub()
        .await
        .expect("scrubbing after a key is destroyed");
    assert_found(store, &kept, "after the scrub").await;
    assert_eq!(by_id(store, gone.key_id).await, None, "still destroyed");
    store.scrub().await.expect("scrubbing again");
}
