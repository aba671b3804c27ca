//! Embeds the shipped playbooks (`playbooks/*.yaml` at the repository root)
//! as `EMBEDDED`, so every binary built on this crate works from any
//! directory after `cargo install`.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = manifest.join("../../playbooks");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "cannot list the shipped playbooks at {}: {e}",
                dir.display()
            )
        })
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no shipped playbooks in {}",
        dir.display()
    );
    let mut code = String::from(
        "/// The shipped playbooks as `(file name, text)`, in name order.\n\
         pub const EMBEDDED: &[(&str, &str)] = &[\n",
    );
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("playbook file name is not UTF-8: {}", file.display()));
        let path = file
            .canonicalize()
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let _ = writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    std::fs::write(out.join("embedded_playbooks.rs"), code)
        .unwrap_or_else(|e| panic!("cannot write the embedded playbook list: {e}"));
}
