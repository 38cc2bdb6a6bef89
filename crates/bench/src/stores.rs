//! Where each workload's fresh store lives: a temporary SQLite file (the
//! default), a file in a given folder, or a fresh database on a MongoDB
//! server.

use std::path::PathBuf;

use anyhow::bail;
use tickets::StoreUrl;

/// The `--store` choice.
#[derive(Debug)]
pub enum Stores {
    /// SQLite files in a folder (a temporary one unless given).
    Sqlite {
        folder: PathBuf,
        /// Keeps a temporary folder alive, and removes it at the end.
        _temp: Option<tempfile::TempDir>,
    },
    /// Databases named `<given database or "bench">_<run>_<label>` on the
    /// server of a MongoDB URI.
    Mongo { uri: String, run: String },
}

impl Stores {
    /// `sqlite` (or nothing): temporary files; `sqlite://FOLDER`: files in
    /// that folder; `mongodb://…`: fresh databases on that server.
    pub fn parse(spec: Option<&str>) -> anyhow::Result<Stores> {
        match spec {
            None | Some("sqlite") => {
                let temp = tempfile::Builder::new().prefix("ticket-bench").tempdir()?;
                Ok(Stores::Sqlite {
                    folder: temp.path().to_owned(),
                    _temp: Some(temp),
                })
            }
            Some(spec) if spec.starts_with("sqlite://") => {
                let folder = PathBuf::from(&spec["sqlite://".len()..]);
                std::fs::create_dir_all(&folder)?;
                Ok(Stores::Sqlite {
                    folder,
                    _temp: None,
                })
            }
            Some(spec) if spec.starts_with("mongodb://") || spec.starts_with("mongodb+srv://") => {
                Ok(Stores::Mongo {
                    uri: spec.to_owned(),
                    run: chrono::Utc::now().format("%H%M%S").to_string(),
                })
            }
            Some(other) => bail!(
                "--store `{other}`: use sqlite (temporary files), sqlite://FOLDER or mongodb://HOST/DATABASE"
            ),
        }
    }

    /// A store URL no earlier workload of this run used.
    pub fn fresh(&self, label: &str) -> StoreUrl {
        match self {
            Stores::Sqlite { folder, .. } => {
                let path = folder.join(format!("{label}.db"));
                // A leftover of an earlier run in a given folder is not fresh.
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                StoreUrl::Sqlite(path)
            }
            Stores::Mongo { uri, run } => StoreUrl::Mongo(with_database(uri, run, label)),
        }
    }

    /// A folder for files beside the stores: logs, the naive database.
    pub fn scratch(&self) -> Option<PathBuf> {
        match self {
            Stores::Sqlite { folder, .. } => Some(folder.clone()),
            Stores::Mongo { .. } => None,
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Stores::Sqlite { .. } => "sqlite",
            Stores::Mongo { .. } => "mongodb",
        }
    }
}

/// The URI with its database path replaced by `<database>_<run>_<label>`.
pub fn with_database(uri: &str, run: &str, label: &str) -> String {
    let scheme_end = uri.find("://").map_or(0, |i| i + 3);
    let (head, rest) = uri.split_at(scheme_end);
    let (hosts, path_and_query) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => match rest.find('?') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        },
    };
    let (database, query) = match path_and_query.find('?') {
        Some(i) => (&path_and_query[..i], &path_and_query[i..]),
        None => (path_and_query, ""),
    };
    let database = if database.is_empty() {
        "bench"
    } else {
        database
    };
    let label = label.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    format!("{head}{hosts}/{database}_{run}_{label}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongo_databases_are_renamed_keeping_options() {
        assert_eq!(
            with_database("mongodb://h:27017/t?replicaSet=rs0", "r1", "reads-10k"),
            "mongodb://h:27017/t_r1_reads_10k?replicaSet=rs0"
        );
        assert_eq!(
            with_database("mongodb://h:1", "r", "x"),
            "mongodb://h:1/bench_r_x"
        );
        assert_eq!(
            with_database("mongodb://h:1/?directConnection=true", "r", "x"),
            "mongodb://h:1/bench_r_x?directConnection=true"
        );
        assert_eq!(
            with_database("mongodb://h:1?w=1", "r", "x"),
            "mongodb://h:1/bench_r_x?w=1"
        );
    }
}
