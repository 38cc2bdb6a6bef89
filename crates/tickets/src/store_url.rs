//! The `--store` URL: which backend, and where.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A parsed `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `sqlite://PATH`: a relative path (`sqlite://./data/tickets.db`) or an
    /// absolute one (`sqlite:///var/lib/tickets.db`).
    Sqlite(PathBuf),
    /// `mongodb://…` or `mongodb+srv://…`, passed to the driver as given.
    Mongo(String),
}

pub const DEFAULT_STORE: &str = "sqlite://./data/tickets.db";

impl StoreUrl {
    /// The live projector's longest linger on this backend when no flag sets
    /// it (see [`projector::linger`]). The pause exists for SQLite, where the
    /// projector's commits and the appends share the file's one write lock;
    /// MongoDB has no such lock, so there the projector reads on at once.
    pub fn default_max_linger(&self) -> std::time::Duration {
        match self {
            StoreUrl::Sqlite(_) => projector::DEFAULT_MAX_LINGER,
            StoreUrl::Mongo(_) => std::time::Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    #[error("`{0}` names no file: use sqlite://PATH, e.g. sqlite://./data/tickets.db")]
    EmptySqlitePath(String),
    #[error(
        "`{0}` is not a store URL: use sqlite://PATH (e.g. sqlite://./data/tickets.db) or mongodb://HOST/DATABASE"
    )]
    UnknownScheme(String),
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StoreUrlError::EmptySqlitePath(url.to_owned()));
            }
            return Ok(StoreUrl::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
            return Ok(StoreUrl::Mongo(url.to_owned()));
        }
        Err(StoreUrlError::UnknownScheme(url.to_owned()))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            // Never print credentials that may sit in the URI.
            StoreUrl::Mongo(uri) => match redact_credentials(uri) {
                Some(redacted) => f.write_str(&redacted),
                None => f.write_str(uri),
            },
        }
    }
}

fn redact_credentials(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let (userinfo, host) = rest.split_once('@')?;
    let user = userinfo.split(':').next().unwrap_or_default();
    Some(format!("{scheme}://{user}:***@{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_projector_lingers_by_default_only_on_sqlite() {
        let sqlite: StoreUrl = DEFAULT_STORE.parse().expect("sqlite url");
        let mongo: StoreUrl = "mongodb://localhost/tickets".parse().expect("mongo url");
        assert_eq!(sqlite.default_max_linger(), projector::DEFAULT_MAX_LINGER);
        assert_eq!(mongo.default_max_linger(), std::time::Duration::ZERO);
    }

    #[test]
    fn sqlite_paths_relative_and_absolute() {
        assert_eq!(
            DEFAULT_STORE.parse(),
            Ok(StoreUrl::Sqlite("./data/tickets.db".into()))
        );
        assert_eq!(
            "sqlite://data/t.db".parse(),
            Ok(StoreUrl::Sqlite("data/t.db".into()))
        );
        assert_eq!(
            "sqlite:///var/lib/tickets.db".parse(),
            Ok(StoreUrl::Sqlite("/var/lib/tickets.db".into()))
        );
    }

    #[test]
    fn rejects_empty_paths_and_unknown_schemes_with_a_hint() {
        assert!(matches!(
            "sqlite://".parse::<StoreUrl>(),
            Err(StoreUrlError::EmptySqlitePath(_))
        ));
        let err = "postgres://x".parse::<StoreUrl>().unwrap_err();
        assert!(err.to_string().contains("sqlite://PATH"), "{err}");
    }

    #[test]
    fn mongo_urls_display_without_passwords() {
        let url: StoreUrl = "mongodb://app:s3cret@db:27017/tickets".parse().unwrap();
        assert_eq!(url.to_string(), "mongodb://app:***@db:27017/tickets");
    }
}
