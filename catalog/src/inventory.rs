//! The files one Lance version of a collection needs: the inventory a snapshot manifest lists and
//! garbage collection protects.
//!
//! A version needs its manifest file, every data file of its fragments, their deletion files and
//! the files of its indices. Files may live in the collection's own directory or, for a
//! collection restored without copying, in another collection's directory (a Lance base path);
//! every path is given relative to the data root so both cases look the same.

use std::collections::HashMap;

use futures::TryStreamExt;
use lance::index::DatasetIndexExt;
use lance::Dataset;
use lance_table::io::deletion::relative_deletion_file_path;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};
use crate::location::DataRoot;

/// What a file is to the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FileKind {
    /// A data file of a fragment.
    Data,
    /// A deletion file (rows deleted from a fragment).
    Deletion,
    /// A file of an index.
    Index,
    /// The version's own manifest.
    VersionManifest,
}

impl FileKind {
    /// The kind's name in manifests (`DATA`, `DELETION`, `INDEX`, `VERSION_MANIFEST`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Data => "DATA",
            Self::Deletion => "DELETION",
            Self::Index => "INDEX",
            Self::VersionManifest => "VERSION_MANIFEST",
        }
    }

    /// Parses a manifest kind name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "DATA" => Self::Data,
            "DELETION" => Self::Deletion,
            "INDEX" => Self::Index,
            "VERSION_MANIFEST" => Self::VersionManifest,
            _ => return None,
        })
    }
}

/// One file a version needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionFile {
    /// Path relative to the data root.
    pub path: String,
    /// What the file is.
    pub kind: FileKind,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Rows in the file (data: physical rows; deletion: rows deleted).
    pub row_count: Option<u64>,
    /// The fragment it belongs to (data and deletion files).
    pub fragment_id: Option<u64>,
    /// The object store's content tag (ETag) for the file, if the store gives one.
    pub checksum: Option<String>,
}

/// Whether a file's ETag now (`actual`) still matches the one its manifest recorded
/// (`expected`), that is, whether the file is the same.
///
/// An object store's ETag changes with the content. A local file's is its inode, modification
/// time and size (`"<inode>-<mtime>-<size>"` in hex): a copy of the data root that keeps
/// modification times (`cp -a`, `rsync -a`) gives every file a new inode and nothing else, so
/// local ETags are compared on the modification time and size alone; a file written again has a
/// new modification time.
pub fn same_file(expected: &str, actual: &str) -> bool {
    fn time_and_size(etag: &str) -> Option<(&str, &str)> {
        let parts: Vec<&str> = etag
            .strip_prefix('"')?
            .strip_suffix('"')?
            .split('-')
            .collect();
        match parts.as_slice() {
            [inode, mtime, size]
                if [inode, mtime, size]
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_hexdigit())) =>
            {
                Some((mtime, size))
            }
            _ => None,
        }
    }
    match (time_and_size(expected), time_and_size(actual)) {
        (Some(e), Some(a)) => e == a,
        _ => expected == actual,
    }
}

/// Where a base (the collection itself, or a Lance base path) lives, relative to the root, and
/// whether it is a dataset root (with `data/`, `_deletions/`, `_indices/` under it).
struct Base {
    dir: String,
    dataset_root: bool,
}

fn bases(root: &DataRoot, location: &str, dataset: &Dataset) -> Result<HashMap<Option<u32>, Base>> {
    let mut out = HashMap::new();
    out.insert(
        None,
        Base {
            dir: location.trim_matches('/').to_string(),
            dataset_root: true,
        },
    );
    for (id, base) in &dataset.manifest().base_paths {
        let dir = root
            .relative_uri(&base.path)
            .ok_or_else(|| CatalogError::InvalidRequest {
                message: format!(
                    "collection at '{location}' refers to files outside the data root: {}",
                    base.path
                ),
            })?;
        out.insert(
            Some(*id),
            Base {
                dir,
                dataset_root: base.is_dataset_root,
            },
        );
    }
    Ok(out)
}

impl Base {
    fn data_dir(&self) -> String {
        if self.dataset_root {
            format!("{}/data", self.dir)
        } else {
            self.dir.clone()
        }
    }
}

/// Lists every object under `dir` (root-relative), by root-relative path.
async fn list(root: &DataRoot, dir: &str) -> Result<HashMap<String, ObjectMeta>> {
    let prefix = root.path_of(dir);
    let metas: Vec<ObjectMeta> = root.store().list(Some(&prefix)).try_collect().await?;
    Ok(metas
        .into_iter()
        .filter_map(|m| root.relative_path(&m.location).map(|p| (p, m)))
        .collect())
}

/// The files `dataset`'s checked-out version needs; `location` is the collection's directory
/// relative to the root.
pub async fn version_files(
    root: &DataRoot,
    location: &str,
    dataset: &Dataset,
) -> Result<Vec<VersionFile>> {
    let bases = bases(root, location, dataset)?;
    let mut objects = HashMap::new();
    for base in bases.values() {
        for sub in ["data", "_deletions", "_indices"] {
            if sub == "data" || base.dataset_root {
                let dir = if sub == "data" {
                    base.data_dir()
                } else {
                    format!("{}/{sub}", base.dir)
                };
                objects.extend(list(root, &dir).await?);
            }
        }
    }
    let base_of = |id: Option<u32>| {
        bases.get(&id).ok_or_else(|| CatalogError::InvalidRequest {
            message: format!("collection at '{location}' refers to an unknown base path {id:?}"),
        })
    };
    let missing = |path: &str| CatalogError::InvalidRequest {
        message: format!("file '{path}' of the version is missing from the store"),
    };
    let mut out = Vec::new();
    for fragment in dataset.fragments().iter() {
        for file in &fragment.files {
            let path = format!("{}/{}", base_of(file.base_id)?.data_dir(), file.path);
            let meta = objects.get(&path).ok_or_else(|| missing(&path))?;
            out.push(VersionFile {
                size_bytes: meta.size,
                checksum: meta.e_tag.clone(),
                path,
                kind: FileKind::Data,
                row_count: fragment.physical_rows.map(|r| r as u64),
                fragment_id: Some(fragment.id),
            });
        }
        if let Some(deletion) = &fragment.deletion_file {
            let base = base_of(deletion.base_id)?;
            let path = format!(
                "{}/{}",
                base.dir,
                relative_deletion_file_path(fragment.id, deletion)
            );
            let meta = objects.get(&path).ok_or_else(|| missing(&path))?;
            out.push(VersionFile {
                size_bytes: meta.size,
                checksum: meta.e_tag.clone(),
                path,
                kind: FileKind::Deletion,
                row_count: deletion.num_deleted_rows.map(|r| r as u64),
                fragment_id: Some(fragment.id),
            });
        }
    }
    for index in dataset.load_indices().await?.iter() {
        let prefix = format!("{}/_indices/{}/", base_of(index.base_id)?.dir, index.uuid);
        let mut files: Vec<_> = objects
            .iter()
            .filter(|(path, _)| path.starts_with(&prefix))
            .collect();
        files.sort_by(|a, b| a.0.cmp(b.0));
        for (path, meta) in files {
            out.push(VersionFile {
                path: path.clone(),
                kind: FileKind::Index,
                size_bytes: meta.size,
                row_count: None,
                fragment_id: None,
                checksum: meta.e_tag.clone(),
            });
        }
    }
    let manifest = dataset.manifest_location();
    let path = root
        .relative_path(&manifest.path)
        .ok_or_else(|| missing(manifest.path.as_ref()))?;
    let meta = root.store().head(&manifest.path).await?;
    out.push(VersionFile {
        path,
        kind: FileKind::VersionManifest,
        size_bytes: meta.size,
        row_count: None,
        fragment_id: None,
        checksum: meta.e_tag,
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::same_file;

    #[test]
    fn local_etags_match_across_a_copy_but_not_a_rewrite() {
        // The same file after `cp -a`: another inode, the same modification time and size.
        assert!(same_file(
            "\"1a2b-5f0e1d2c3b4a-400\"",
            "\"9f9f-5f0e1d2c3b4a-400\""
        ));
        // Written again: a new modification time (or size).
        assert!(!same_file(
            "\"1a2b-5f0e1d2c3b4a-400\"",
            "\"1a2b-5f0e1d2c3b4b-400\""
        ));
        assert!(!same_file(
            "\"1a2b-5f0e1d2c3b4a-400\"",
            "\"1a2b-5f0e1d2c3b4a-401\""
        ));
        // Other stores' ETags (an MD5, a multipart upload's) compare whole.
        assert!(same_file("\"d41d8cd98f00b204\"", "\"d41d8cd98f00b204\""));
        assert!(!same_file("\"d41d8cd98f00b204\"", "\"d41d8cd98f00b205\""));
        assert!(!same_file("\"abc-2\"", "\"abd-2\""));
    }
}
