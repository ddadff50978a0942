//! An object store wrapper that runs a hook before every operation.
//!
//! Crash and fault tests install a hook that fails a chosen operation (the third `put` under
//! `snapshots/`, say); the operation then never reaches the inner store, which is exactly what a
//! process crash at that point leaves behind. With no hook installed the wrapper only forwards.

use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

/// The kind of object store operation a hook sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// A single-part write.
    Put,
    /// The start of a multipart write.
    PutMultipart,
    /// A read (including metadata-only reads).
    Get,
    /// A delete.
    Delete,
    /// A listing.
    List,
    /// A server-side copy.
    Copy,
    /// A rename.
    Rename,
}

/// A hook called before each operation; an `Err(message)` fails the operation.
pub type FaultHook = Arc<dyn Fn(StoreOp, &Path) -> Result<(), String> + Send + Sync>;

/// Shared, replaceable hook slot: tests install and clear hooks while the store is in use.
#[derive(Clone, Default)]
pub struct FaultHooks {
    hook: Arc<RwLock<Option<FaultHook>>>,
}

impl fmt::Debug for FaultHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultHooks").finish_non_exhaustive()
    }
}

impl FaultHooks {
    /// Installs `hook`, replacing any previous one.
    pub fn set(&self, hook: FaultHook) {
        if let Ok(mut slot) = self.hook.write() {
            *slot = Some(hook);
        }
    }

    /// Removes the installed hook.
    pub fn clear(&self) {
        if let Ok(mut slot) = self.hook.write() {
            *slot = None;
        }
    }

    fn check(&self, op: StoreOp, path: &Path) -> object_store::Result<()> {
        let hook = self.hook.read().ok().and_then(|slot| slot.clone());
        match hook {
            Some(hook) => hook(op, path).map_err(|message| object_store::Error::Generic {
                store: "fault-injection",
                source: format!("injected fault on {op:?} {path}: {message}").into(),
            }),
            None => Ok(()),
        }
    }
}

/// An [`ObjectStore`] that calls [`FaultHooks`] before forwarding each operation.
#[derive(Debug)]
pub struct FaultInjectingStore {
    inner: Arc<dyn ObjectStore>,
    hooks: FaultHooks,
}

impl FaultInjectingStore {
    /// Wraps `inner`; `hooks` can be changed later through any clone of it.
    pub fn new(inner: Arc<dyn ObjectStore>, hooks: FaultHooks) -> Self {
        Self { inner, hooks }
    }
}

impl fmt::Display for FaultInjectingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultInjecting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultInjectingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.hooks.check(StoreOp::Put, location)?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.hooks.check(StoreOp::PutMultipart, location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.hooks.check(StoreOp::Get, location)?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let hooks = self.hooks.clone();
        let checked = locations
            .map(move |path| {
                let path = path?;
                hooks.check(StoreOp::Delete, &path)?;
                Ok(path)
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self
            .hooks
            .check(StoreOp::List, prefix.unwrap_or(&Path::default()))
        {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.hooks
            .check(StoreOp::List, prefix.unwrap_or(&Path::default()))?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.hooks.check(StoreOp::Copy, to)?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.hooks.check(StoreOp::Rename, to)?;
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn a_hook_fails_only_the_operations_it_chooses() {
        let hooks = FaultHooks::default();
        let store = FaultInjectingStore::new(Arc::new(InMemory::new()), hooks.clone());
        let a = Path::from("a/x");
        let b = Path::from("b/x");
        hooks.set(Arc::new(|op, path: &Path| {
            if op == StoreOp::Put && path.as_ref().starts_with("b/") {
                Err("crash".to_string())
            } else {
                Ok(())
            }
        }));
        store.put(&a, PutPayload::from_static(b"1")).await.unwrap();
        let err = store
            .put(&b, PutPayload::from_static(b"1"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("injected fault on Put b/x: crash"),
            "{err}"
        );
        assert!(matches!(
            store.get(&b).await,
            Err(object_store::Error::NotFound { .. })
        ));
        hooks.clear();
        store.put(&b, PutPayload::from_static(b"1")).await.unwrap();
        assert_eq!(
            store.get(&b).await.unwrap().bytes().await.unwrap().as_ref(),
            b"1"
        );
    }
}
