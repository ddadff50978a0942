//! The data root: where the catalog log, the collections and the snapshot manifests live.
//!
//! A root is a local directory (created if missing) or an object store URL. The catalog's own
//! reads and writes go through [`DataRoot::store`]; Lance datasets are opened from
//! [`DataRoot::uri_of`] with [`DataRoot::store_params`], so both see the same store. A root opened
//! with [`DataRoot::open_with_faults`] routes every operation, Lance's included, through
//! [`FaultHooks`] — the way crash tests stop a write at a chosen point.

use std::sync::Arc;

use lance::io::{
    ObjectStore as LanceObjectStore, ObjectStoreParams, ObjectStoreRegistry, WrappingObjectStore,
};
use object_store::list::PaginatedListStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

use crate::error::{CatalogError, Result};
use crate::fault::{FaultHooks, FaultInjectingStore};

/// The URL schemes of the object stores this build can hold a root in.
const OBJECT_STORE_SCHEMES: &[&str] = &["s3"];

/// The storage root of one Quiver instance.
#[derive(Debug, Clone)]
pub struct DataRoot {
    display: String,
    base_uri: String,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    hooks: Option<FaultHooks>,
}

/// Lance's hook to wrap every object store it opens: routes Lance's I/O through [`FaultHooks`].
#[derive(Debug)]
struct FaultWrapper(FaultHooks);

impl WrappingObjectStore for FaultWrapper {
    fn wrap(&self, _store_prefix: &str, original: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(FaultInjectingStore::new(original, self.0.clone()))
    }

    fn wrap_paginated(
        &self,
        _store_prefix: &str,
        _original: Arc<dyn PaginatedListStore>,
    ) -> Option<Arc<dyn PaginatedListStore>> {
        // Give up listing push-down so that listings pass through `wrap` and its hooks.
        None
    }
}

impl DataRoot {
    /// Opens the root at `location`: a directory path (created if missing), a `file://` URL, or
    /// an object store URL (`s3://bucket/prefix`).
    ///
    /// An object store root is opened through Lance's store registry, so the catalog and the
    /// Lance datasets under the root are configured alike: from the `AWS_*` environment
    /// variables (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`, ...) and
    /// the standard AWS credential chain.
    pub async fn open(location: &str) -> Result<Self> {
        let invalid = |message: String| CatalogError::InvalidLocation {
            location: location.to_string(),
            message,
        };
        if location.trim().is_empty() {
            return Err(invalid("the location is empty".to_string()));
        }
        let url = match Url::parse(location) {
            Ok(url) if url.scheme().len() > 1 => url,
            // Not a URL, or a Windows drive letter: a path.
            _ => return Self::open_local(location),
        };
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|_| invalid("not a valid file URL".to_string()))?;
            return Self::open_local(&path.to_string_lossy());
        }
        if !OBJECT_STORE_SCHEMES.contains(&url.scheme()) {
            return Err(invalid(format!(
                "unsupported object store URL scheme `{}`; a data root is a local directory, a \
                 file:// URL or an s3:// URL",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("the URL names no bucket".to_string()));
        }
        let base_uri = location.trim_end_matches('/').to_string();
        let (store, prefix) = LanceObjectStore::from_uri_and_params(
            Arc::new(ObjectStoreRegistry::default()),
            &base_uri,
            &ObjectStoreParams::default(),
        )
        .await
        .map_err(|e| invalid(format!("cannot open the object store: {e}")))?;
        Ok(Self {
            display: location.to_string(),
            base_uri,
            store: store.inner.clone(),
            prefix,
            hooks: None,
        })
    }

    fn open_local(dir: &str) -> Result<Self> {
        let invalid = |message: String| CatalogError::InvalidLocation {
            location: dir.to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| invalid(format!("cannot create it: {e}")))?;
        let absolute = std::fs::canonicalize(dir).map_err(|e| invalid(e.to_string()))?;
        if !absolute.is_dir() {
            return Err(invalid("not a directory".to_string()));
        }
        let prefix = Path::from_filesystem_path(&absolute).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            display: dir.to_string(),
            base_uri: absolute.to_string_lossy().trim_end_matches('/').to_string(),
            store: Arc::new(LocalFileSystem::new().with_automatic_cleanup(true)),
            prefix,
            hooks: None,
        })
    }

    /// Opens the root like [`DataRoot::open`], with every operation (the catalog's and Lance's)
    /// passing through `hooks` first.
    ///
    /// Lance writes local files directly, past any object store wrapper; a local root opened this
    /// way therefore gives Lance `file-object-store://` URIs, Lance's scheme for local files
    /// through the object store API, so that every write meets the hooks.
    pub async fn open_with_faults(location: &str, hooks: FaultHooks) -> Result<Self> {
        let mut root = Self::open(location).await?;
        root.store = Arc::new(FaultInjectingStore::new(root.store, hooks.clone()));
        root.hooks = Some(hooks);
        if root.base_uri.starts_with('/') {
            root.base_uri = format!("file-object-store://{}", root.base_uri);
        }
        Ok(root)
    }

    /// The location as the user gave it.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The object store holding the root.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The root's path inside [`DataRoot::store`].
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The store path of `relative` (a `/`-separated path under the root).
    pub fn path_of(&self, relative: &str) -> Path {
        relative
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(self.prefix.clone(), |acc, part| acc.join(part))
    }

    /// The root-relative form of a store path under the root, if it is under it.
    pub fn relative_path(&self, path: &Path) -> Option<String> {
        let prefix = self.prefix.as_ref();
        let full = path.as_ref();
        if prefix.is_empty() {
            return Some(full.to_string());
        }
        full.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(str::to_string)
    }

    /// The root-relative form of a URI (or local path) under the root, as Lance records base
    /// paths, if it is under it.
    pub fn relative_uri(&self, uri: &str) -> Option<String> {
        let plain = |u: &str| -> String {
            let u = u
                .strip_prefix("file-object-store://")
                .or_else(|| u.strip_prefix("file://"))
                .unwrap_or(u);
            u.to_string()
        };
        plain(uri)
            .strip_prefix(&plain(&self.base_uri))
            .and_then(|rest| rest.strip_prefix('/').map(str::to_string))
            .map(|rest| rest.trim_end_matches('/').to_string())
    }

    /// The URI Lance opens for `relative` (a `/`-separated path under the root).
    pub fn uri_of(&self, relative: &str) -> String {
        format!("{}/{}", self.base_uri, relative.trim_matches('/'))
    }

    /// Object store parameters for Lance: routes Lance's I/O through the fault hooks, if any.
    pub fn store_params(&self) -> Option<ObjectStoreParams> {
        self.hooks.as_ref().map(|hooks| ObjectStoreParams {
            object_store_wrapper: Some(Arc::new(FaultWrapper(hooks.clone()))),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_root_is_created_and_addressed_by_absolute_paths() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("nested").join("root");
        let root = DataRoot::open(&location.to_string_lossy()).await.unwrap();
        assert!(location.is_dir());
        let canonical = std::fs::canonicalize(&location).unwrap();
        assert_eq!(
            root.uri_of("collections/abc/"),
            format!("{}/collections/abc", canonical.to_string_lossy())
        );
        assert_eq!(
            root.path_of("collections/abc").to_string(),
            format!("{}/collections/abc", root.prefix())
        );
    }

    #[tokio::test]
    async fn bad_locations_are_named_in_the_error() {
        let err = DataRoot::open("").await.unwrap_err();
        assert!(err.to_string().contains("the location is empty"), "{err}");
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = DataRoot::open(&file.path().to_string_lossy())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("invalid data location"), "{err}");
        let err = DataRoot::open("nosuchscheme://bucket/x").await.unwrap_err();
        assert!(
            err.to_string()
                .contains("unsupported object store URL scheme `nosuchscheme`"),
            "{err}"
        );
        let err = DataRoot::open("s3:///prefix").await.unwrap_err();
        assert!(err.to_string().contains("names no bucket"), "{err}");
    }
}
