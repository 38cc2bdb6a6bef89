//! Customers' data keys ([`sealing::KeyStore`]) in the `customer_keys`
//! collection (`migrations/mongodb/0009_customer_keys.json`), and the
//! rewrite of an event stored in clear (`EventStore::redact`).
//!
//! Each operation is one command outside any transaction, on the database
//! handle's concerns: a key is acknowledged once a majority has it, so a
//! failover cannot take back a key whose sealed events were acknowledged
//! after it; reads see majority-committed documents. Every operation is
//! bounded by `bounds::READ_DEADLINE`, past which it is `Unavailable`.

use async_trait::async_trait;
use chrono::Utc;
use futures::TryStreamExt;
use mongodb::Collection;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, Document, doc};
use sealing::{KeyError, KeyStore, StoredKey};
use uuid::Uuid;

use crate::codec::{self, Fields};
use crate::error::{DbError, is_duplicate_key};
use crate::{MongoStore, bounds};

type Result<T, E = DbError<KeyError>> = std::result::Result<T, E>;

/// The collection, from migration 0009.
pub(crate) const KEYS: &str = "customer_keys";

impl From<DbError<KeyError>> for KeyError {
    fn from(error: DbError<KeyError>) -> Self {
        match error {
            DbError::Refused(refused) => refused,
            DbError::Corrupt(what) => KeyError::Corrupt(what),
            DbError::Mongo(e) => KeyError::Unavailable(Box::new(e)),
            DbError::Retry(what) | DbError::Unavailable(what) => KeyError::Unavailable(what.into()),
        }
    }
}

fn read(document: &Document) -> Result<StoredKey, String> {
    let fields = Fields::new(KEYS, document);
    let key_id = fields
        .str("_id")?
        .parse::<Uuid>()
        .map_err(|e| fields.corrupt(e.to_string()))?;
    let material = match document.get("material") {
        Some(Bson::Binary(binary)) => binary.bytes.clone(),
        _ => return Err(fields.corrupt("`material` is not binary")),
    };
    Ok(StoredKey {
        key_id,
        customer: fields.str("customer")?.to_owned(),
        material,
    })
}

async fn find(keys: &Collection<Document>, filter: Document) -> Result<Option<StoredKey>> {
    keys.find_one(filter)
        .await?
        .map(|document| read(&document).map_err(DbError::Corrupt))
        .transpose()
}

/// Ids per `by_ids` query: a few tens of kilobytes of filter, far under a
/// command's 16 MB.
const IDS_PER_QUERY: usize = 1_000;

async fn find_all(keys: &Collection<Document>, key_ids: &[Uuid]) -> Result<Vec<StoredKey>> {
    let mut found = Vec::with_capacity(key_ids.len());
    for chunk in key_ids.chunks(IDS_PER_QUERY) {
        let ids: Vec<Bson> = chunk.iter().map(|&id| codec::id(id).into()).collect();
        let documents: Vec<Document> = keys
            .find(doc! { "_id": { "$in": ids } })
            .await?
            .try_collect()
            .await?;
        for document in &documents {
            found.push(read(document).map_err(DbError::Corrupt)?);
        }
    }
    Ok(found)
}

async fn create(keys: &Collection<Document>, key: &StoredKey) -> Result<StoredKey> {
    let document = doc! {
        "_id": codec::id(key.key_id),
        "customer": &key.customer,
        "material": Binary { subtype: BinarySubtype::Generic, bytes: key.material.clone() },
        "created_at": codec::date(Utc::now()),
    };
    match keys.insert_one(document).await {
        Ok(_) => Ok(key.clone()),
        // The customer has a key already (a concurrent first ticket): that one.
        Err(e) if is_duplicate_key(&e) => find(keys, doc! { "customer": &key.customer })
            .await?
            .ok_or_else(|| {
                DbError::Corrupt(format!("the key of customer {:?} vanished", key.customer))
            }),
        Err(e) => Err(e.into()),
    }
}

impl MongoStore {
    fn customer_keys(&self) -> Collection<Document> {
        self.inner.db.collection(KEYS)
    }
}

#[async_trait]
impl KeyStore for MongoStore {
    async fn by_customer(&self, customer: &str) -> Result<Option<StoredKey>, KeyError> {
        let keys = self.customer_keys();
        let filter = doc! { "customer": customer };
        Ok(bounds::read("a customer's key", find(&keys, filter)).await?)
    }

    async fn by_id(&self, key_id: Uuid) -> Result<Option<StoredKey>, KeyError> {
        let keys = self.customer_keys();
        let filter = doc! { "_id": codec::id(key_id) };
        Ok(bounds::read("a key", find(&keys, filter)).await?)
    }

    async fn by_ids(&self, key_ids: &[Uuid]) -> Result<Vec<StoredKey>, KeyError> {
        let keys = self.customer_keys();
        Ok(bounds::read("keys", find_all(&keys, key_ids)).await?)
    }

    async fn create(&self, key: StoredKey) -> Result<StoredKey, KeyError> {
        let keys = self.customer_keys();
        Ok(bounds::read("a key's creation", create(&keys, &key)).await?)
    }

    async fn destroy(&self, key_id: Uuid) -> Result<bool, KeyError> {
        let keys = self.customer_keys();
        let deleted = bounds::read("a key's destruction", async {
            Ok::<_, DbError<KeyError>>(keys.delete_one(doc! { "_id": codec::id(key_id) }).await?)
        })
        .await?;
        Ok(deleted.deleted_count == 1)
    }
}
