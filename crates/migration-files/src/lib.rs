//! What both backends' migration runners share, and nothing that touches a
//! database: each backend's migration files, compiled in ([`SQLITE`],
//! [`MONGODB`]), a file's checksum, the record of an applied migration, and
//! the check that a `migrations/<backend>/` folder and a list agree.
//!
//! The lists are derived from the folders at build time (`build.rs`): a new
//! file in `migrations/<backend>/` is in the next build, and a file that is not
//! a well-named migration (`NNNN_<name>.<extension>`, numbered 1, 2, 3 … with
//! no gap) fails the build, naming it.
//!
//! How a migration is applied and recorded is each backend's own business
//! (`store-sqlite` and `store-mongo` own their `migrate` modules).

use std::path::Path;

use chrono::{DateTime, Utc};

mod folder;

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// One migration file, compiled in by the build script with `include_str!`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// 1, 2, 3 … with no gaps; the order they are applied in.
    pub version: u32,
    /// The file name without its extension, e.g. `0001_events`.
    pub name: &'static str,
    pub text: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        checksum(self.text)
    }
}

/// FNV-1a 64 as 16 hex digits, over the text with carriage returns dropped so
/// that a checkout with Windows line endings does not look like an edit.
pub fn checksum(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes().filter(|b| *b != b'\r') {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// One applied migration, as a backend's `schema_migrations` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: u32,
    pub name: String,
    /// [`checksum`] of the migration's text when it was applied.
    pub checksum: String,
    pub applied_at: DateTime<Utc>,
}

/// Checks that the files with `extension` in `folder` are exactly the listed
/// migrations, in order, with the same texts, numbered 1, 2, 3 … and named
/// after their versions (see [`SQLITE`] for how the files are named).
pub fn check_folder(folder: &Path, extension: &str, listed: &[Migration]) -> Result<(), String> {
    let files = folder::read(folder, extension)?;
    let in_folder: Vec<(u32, &str)> = files
        .iter()
        .map(|file| (file.version, file.name.as_str()))
        .collect();
    let in_list: Vec<(u32, &str)> = listed.iter().map(|m| (m.version, m.name)).collect();
    if in_folder != in_list {
        return Err(format!(
            "{} holds {in_folder:?} but the build lists {in_list:?}",
            folder.display()
        ));
    }
    for migration in listed {
        let path = folder.join(format!("{}.{extension}", migration.name));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if checksum(&text) != migration.checksum() {
            return Err(format!(
                "{} differs from the build's text of {}",
                path.display(),
                migration.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_fnv1a_64_and_ignores_carriage_returns() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_eq!(checksum("a"), "af63dc4c8601ec8c");
        assert_eq!(checksum("a\nb"), checksum("a\r\nb"));
        assert_ne!(checksum("a\nb"), checksum("a\nc"));
    }

    #[test]
    fn a_folder_and_a_list_that_disagree_are_named() {
        let dir = std::env::temp_dir().join(format!("migration-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0001_a.sql"), "x").unwrap();
        std::fs::write(dir.join("0002_b.sql"), "y").unwrap();
        std::fs::write(dir.join("README.md"), "not a migration").unwrap();
        let a = Migration {
            version: 1,
            name: "0001_a",
            text: "x",
        };
        let b = Migration {
            version: 2,
            name: "0002_b",
            text: "y",
        };
        assert_eq!(check_folder(&dir, "sql", &[a, b]), Ok(()));
        assert!(
            check_folder(&dir, "sql", &[a])
                .unwrap_err()
                .contains("0002_b")
        );
        let misnumbered = Migration { version: 3, ..b };
        assert!(check_folder(&dir, "sql", &[a, misnumbered]).is_err());
        let edited = Migration { text: "z", ..b };
        assert!(
            check_folder(&dir, "sql", &[a, edited])
                .unwrap_err()
                .contains("differs")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A folder of `files` (name, text) made for one test.
    fn folder_of(test: &str, files: &[&str]) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("migration-files-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for file in files {
            std::fs::write(dir.join(file), "x").unwrap();
        }
        dir
    }

    #[test]
    fn a_misnamed_or_misnumbered_file_is_refused_by_name() {
        for (test, files, named) in [
            ("gap", &["0001_a.sql", "0003_c.sql"][..], "0003_c"),
            ("repeat", &["0001_a.sql", "0001_b.sql"][..], "0001_b"),
            ("from_zero", &["0000_a.sql"][..], "0000_a"),
            (
                "three_digits",
                &["0001_a.sql", "002_b.sql"][..],
                "002_b.sql",
            ),
            ("no_name", &["0001_.sql"][..], "0001_.sql"),
            ("dash", &["0001-a.sql"][..], "0001-a.sql"),
            ("capitals", &["0001_A.sql"][..], "0001_A.sql"),
            (
                "other_extension",
                &["0001_a.sql", "0002_b.json"][..],
                "0002_b.json",
            ),
            (
                "backup",
                &["0001_a.sql", "0001_a.sql.orig"][..],
                "0001_a.sql.orig",
            ),
        ] {
            let dir = folder_of(test, files);
            let error = folder::read(&dir, "sql").expect_err(test);
            assert!(error.contains(named), "{test}: {error}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let dir = folder_of("good", &["0002_b.sql", "0001_a.sql", "README.md"]);
        let names: Vec<String> = folder::read(&dir, "sql")
            .unwrap()
            .into_iter()
            .map(|file| file.name)
            .collect();
        assert_eq!(names, ["0001_a", "0002_b"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_compiled_lists_are_the_folders() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        check_folder(&root.join("sqlite"), "sql", SQLITE).unwrap();
        check_folder(&root.join("mongodb"), "json", MONGODB).unwrap();
        assert!(!SQLITE.is_empty() && !MONGODB.is_empty());
    }
}
