//! Opens the backend a [`StoreUrl`] names, as the two trait objects the rest of
//! the system uses.

use std::sync::Arc;

use anyhow::Context;
use auth::TokenStore;
use eventstore::EventStore;
use readmodel::ViewStore;

use crate::StoreUrl;

/// One backend's event store and view store (for SQLite, one file holds both).
#[derive(Debug, Clone)]
pub struct Backend {
    pub events: Arc<dyn EventStore>,
    pub views: Arc<dyn ViewStore>,
    /// The API tokens, kept beside the events.
    pub tokens: Arc<dyn TokenStore>,
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
                Ok(Backend {
                    events: store.clone(),
                    views: store.clone(),
                    tokens: store,
                })
            }
            StoreUrl::Mongo(uri) => {
                let store = Arc::new(store_mongo::MongoStore::connect(uri).await?);
                Ok(Backend {
                    events: store.clone(),
                    views: store.clone(),
                    tokens: store,
                })
            }
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
