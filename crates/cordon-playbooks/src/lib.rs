//! The shipped playbooks (`playbooks/*.yaml` at the repository root), embedded
//! as text at build time so that every front door (the `cordon` binary, the
//! Lambda's `bootstrap`) carries the same set, named by the same hash, and
//! works from any directory. Data only: parsing and validation live in
//! `cordon-core`, so a playbook edit rebuilds this crate and the binaries, not
//! the engine.

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_playbooks.rs"));
}

pub use embedded::EMBEDDED;

#[cfg(test)]
mod tests {
    use super::EMBEDDED;

    #[test]
    fn every_shipped_playbook_is_embedded_once_in_name_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../playbooks");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("the playbooks directory")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = EMBEDDED.iter().map(|(name, _)| *name).collect();
        assert_eq!(embedded, on_disk);
        for (name, text) in EMBEDDED {
            let disk = std::fs::read_to_string(dir.join(name)).expect("a shipped playbook");
            assert_eq!(*text, disk, "{name} differs from its file");
        }
    }
}
