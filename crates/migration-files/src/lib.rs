//! What both backends' migration runners share, and nothing that touches a
//! database: a migration file embedded in the build, its checksum, the record
//! of an applied migration, and the check that a `migrations/<backend>/`
//! folder and a build's list of migrations agree.
//!
//! How a migration is applied and recorded is each backend's own business
//! (`store-sqlite` and `store-mongo` own their `migrate` modules).

use std::path::Path;

use chrono::{DateTime, Utc};

/// One migration file, embedded with `include_str!`.
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
/// migrations, in order, numbered 1, 2, 3 … and named after their versions, so
/// a new file cannot be forgotten in the list (or the list point at nothing).
/// For each backend's tests.
pub fn check_folder(folder: &Path, extension: &str, listed: &[Migration]) -> Result<(), String> {
    let entries =
        std::fs::read_dir(folder).map_err(|e| format!("reading {}: {e}", folder.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", folder.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(&format!(".{extension}")) {
            files.push(stem.to_owned());
        }
    }
    files.sort();
    let names: Vec<&str> = listed.iter().map(|m| m.name).collect();
    if files != names {
        return Err(format!(
            "{} holds {files:?} but the build lists {names:?}",
            folder.display()
        ));
    }
    for (index, migration) in listed.iter().enumerate() {
        let expected = u32::try_from(index + 1).map_err(|e| e.to_string())?;
        if migration.version != expected {
            return Err(format!(
                "{} has version {}, expected {expected}: versions are 1, 2, 3 …",
                migration.name, migration.version
            ));
        }
        if !migration
            .name
            .starts_with(&format!("{:04}_", migration.version))
        {
            return Err(format!("{} is not named after its version", migration.name));
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
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
