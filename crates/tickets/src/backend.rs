//! Opens the backend a [`StoreUrl`] names, as the trait objects the rest of
//! the system uses: the events (sealed: personal fields are encrypted with
//! each customer's key on the way in and opened on the way out), the views,
//! the API tokens and the customers' keys.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use auth::TokenStore;
use eventstore::EventStore;
use readmodel::ViewStore;
use sealing::{KeyStore, Keyring, MasterKey, SealedEvents};

use crate::StoreUrl;

/// One backend's stores (for SQLite, one file holds them all).
#[derive(Debug, Clone)]
pub struct Backend {
    /// The events as the system reads and writes them: sealed at rest.
    pub events: Arc<dyn EventStore>,
    /// The events as stored (personal fields sealed): for an erasure only.
    pub raw_events: Arc<dyn EventStore>,
    pub views: Arc<dyn ViewStore>,
    /// The API tokens, kept beside the events.
    pub tokens: Arc<dyn TokenStore>,
    /// The customers' data keys, behind their cache.
    pub keyring: Arc<Keyring>,
    /// The key store itself (to scrub the files after an erasure).
    pub keys: Arc<dyn KeyStore>,
    /// A MongoDB store, to take off record on a graceful stop (see
    /// [`Backend::close`]).
    mongo: Option<Arc<store_mongo::MongoStore>>,
}

/// The master key that wraps data keys at rest, set once per process from
/// `--master-key-file` before any store is opened.
static MASTER_KEY: OnceLock<Option<MasterKey>> = OnceLock::new();

/// Reads the master key file, if one is given, for every store this process
/// opens. Call once, before the first [`Backend::open`].
pub fn use_master_key_file(path: Option<&Path>) -> anyhow::Result<()> {
    let master = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the master key file {}", path.display()))?;
            Some(
                MasterKey::parse(&text)
                    .with_context(|| format!("the master key file {}", path.display()))?,
            )
        }
        None => None,
    };
    MASTER_KEY
        .set(master)
        .map_err(|_| anyhow::anyhow!("the master key was set twice"))
}

fn sealed(
    raw: Arc<dyn EventStore>,
    keys: Arc<dyn KeyStore>,
) -> (Arc<dyn EventStore>, Arc<Keyring>) {
    let master = MASTER_KEY.get().cloned().flatten();
    let keyring = Arc::new(Keyring::new(keys, master));
    (Arc::new(SealedEvents::new(raw, keyring.clone())), keyring)
}

impl Backend {
    /// Opens the store and applies pending migrations.
    pub async fn open(url: &StoreUrl) -> anyhow::Result<Backend> {
        match url {
            StoreUrl::Sqlite(path) => {
                let path = path.clone();
                let store =
                    tokio::task::spawn_blocking(move || store_sqlite::SqliteStore::open(&path))
                        .await
                        .context("joining the store opener")??;
                let store = Arc::new(store);
                let (events, keyring) = sealed(store.clone(), store.clone());
                Ok(Backend {
                    events,
                    raw_events: store.clone(),
                    views: store.clone(),
                    tokens: store.clone(),
                    keyring,
                    keys: store,
                    mongo: None,
                })
            }
            StoreUrl::Mongo(uri) => {
                let store = Arc::new(store_mongo::MongoStore::connect(uri).await?);
                let (events, keyring) = sealed(store.clone(), store.clone());
                Ok(Backend {
                    events,
                    raw_events: store.clone(),
                    views: store.clone(),
                    tokens: store.clone(),
                    keyring,
                    keys: store.clone(),
                    mongo: Some(store),
                })
            }
        }
    }

    /// Ends what a process leaves on the store when it stops: on MongoDB,
    /// the record of its sessions, so that no other process sweeps them
    /// (`store_mongo`'s `sessions`). Call on a graceful stop, once no more
    /// writes will come; a stop without it costs the others a sweep.
    pub async fn close(&self) {
        if let Some(mongo) = &self.mongo
            && let Err(error) = mongo.shutdown().await
        {
            tracing::warn!(%error, "could not take this process's sessions off record");
        }
    }

    /// Applies pending migrations and nothing else; returns the versions applied
    /// (empty when the schema was already current).
    pub async fn migrate(url: &StoreUrl) -> anyhow::Result<Vec<u32>> {
        match url {
            StoreUrl::Sqlite(path) => {
                let path = path.clone();
                let applied =
                    tokio::task::spawn_blocking(move || store_sqlite::SqliteStore::migrate(&path))
                        .await
                        .context("joining the migrator")??;
                Ok(applied)
            }
            StoreUrl::Mongo(uri) => {
                let store = store_mongo::MongoStore::open(uri).await?;
                Ok(store.migrate().await?)
            }
        }
    }
}
