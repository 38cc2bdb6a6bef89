//! Compiles each backend's migration list from its `migrations/<backend>/`
//! folder at the workspace root, so adding a file there is all a new
//! migration takes. A file that is not a well-named migration stops the
//! build (see `src/folder.rs`).

use std::fmt::Write as _;
use std::path::Path;

#[path = "src/folder.rs"]
mod folder;

/// (folder under `migrations/`, file extension, the list's name).
const BACKENDS: [(&str, &str, &str); 2] =
    [("sqlite", "sql", "SQLITE"), ("mongodb", "json", "MONGODB")];

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut code = String::new();
    for (backend, extension, list) in BACKENDS {
        let folder = Path::new(&manifest).join("../../migrations").join(backend);
        // A directory: cargo reruns this when any file in it is added,
        // removed or changed.
        println!("cargo:rerun-if-changed={}", folder.display());
        let files = folder::read(&folder, extension).unwrap_or_else(|e| panic!("{e}"));
        writeln!(code, "/// `migrations/{backend}/`, in version order.").ok();
        writeln!(code, "pub const {list}: &[Migration] = &[").ok();
        for file in files {
            let name = &file.name;
            writeln!(
                code,
                "    Migration {{ version: {}, name: {name:?}, text: include_str!(concat!(\
                 env!(\"CARGO_MANIFEST_DIR\"), \"/../../migrations/{backend}/{name}.{extension}\")) }},",
                file.version
            )
            .ok();
        }
        writeln!(code, "];").ok();
    }
    std::fs::write(Path::new(&out).join("migrations.rs"), code)
        .unwrap_or_else(|e| panic!("writing the migration lists: {e}"));
}
