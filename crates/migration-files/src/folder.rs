//! Reading a `migrations/<backend>/` folder. The build script compiles each
//! backend's list from it (so a new file is all a new migration takes), and
//! [`check_folder`](crate::check_folder) uses it to hold a list to the folder.
//! This file is compiled into both, so it uses nothing outside `std`.

use std::path::Path;

/// One migration file as the folder holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    /// 1, 2, 3 … with no gaps; the order they are applied in.
    pub version: u32,
    /// The file name without its extension, e.g. `0001_events`.
    pub name: String,
}

/// The migrations in `folder`, in version order: every file but Markdown
/// notes must be `NNNN_<name>.<extension>`, numbered 0001, 0002 … with no
/// gap or repeat. Anything else is refused, naming the file: a misnamed
/// migration would otherwise be left out without a word.
pub fn read(folder: &Path, extension: &str) -> Result<Vec<FileName>, String> {
    let entries =
        std::fs::read_dir(folder).map_err(|e| format!("reading {}: {e}", folder.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {}: {e}", folder.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            continue;
        }
        let stem = name.strip_suffix(&format!(".{extension}")).ok_or_else(|| {
            format!(
                "{}: `{name}` is not a migration (`NNNN_<name>.{extension}`)",
                folder.display()
            )
        })?;
        let version = parse(stem).ok_or_else(|| {
            format!(
                "{}: `{name}` is not named `NNNN_<name>.{extension}` (four digits, an \
                 underscore, then lower-case letters, digits and underscores)",
                folder.display()
            )
        })?;
        files.push(FileName {
            version,
            name: stem.to_owned(),
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    for (index, file) in files.iter().enumerate() {
        let expected = u32::try_from(index + 1).map_err(|e| e.to_string())?;
        if file.version != expected {
            return Err(format!(
                "{}: `{}` has version {}, expected {expected}: versions are 1, 2, 3 … with \
                 no gap or repeat",
                folder.display(),
                file.name,
                file.version
            ));
        }
    }
    Ok(files)
}

/// The version of `NNNN_<name>`, if the stem is spelled so.
fn parse(stem: &str) -> Option<u32> {
    let (digits, rest) = stem.split_once('_')?;
    let well_formed = digits.len() == 4
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if well_formed {
        digits.parse().ok()
    } else {
        None
    }
}
