//! Zeroed arrays that the kernel is asked to back with huge pages.
//!
//! A graph search reads a few cache lines at random places of arrays of tens or hundreds of
//! megabytes (the bottom level's edges, the 8-bit codes, the visited marks). With 4 KiB pages
//! nearly every one of those reads also misses the TLB and walks the page tables; with 2 MiB
//! pages the arrays of a loaded index are a few hundred pages, which the TLB holds. Where
//! transparent huge pages are enabled only on request (`madvise`, the default of many
//! distributions), [`HugePageArray::zeroed`] requests them for arrays of at least one huge page,
//! as in-memory vector indices do (Vespa and Milvus recommend them for their HNSW graphs).
//! Elsewhere, or where the kernel has none to give, the array is ordinary memory.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// The huge page size asked for: 2 MiB, as on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 * 1024 * 1024;

/// Plain numbers, for which all-zero bytes are a value.
pub(crate) trait Zeroable: Copy {}

impl Zeroable for u8 {}
impl Zeroable for u16 {}
impl Zeroable for u32 {}

/// A fixed-length array of `T`, zeroed, in memory aligned to and advised for huge pages where
/// it spans at least one.
pub(crate) struct HugePageArray<T: Zeroable> {
    ptr: NonNull<T>,
    len: usize,
    /// How it was allocated; `None` for an empty array, which owns no memory.
    layout: Option<Layout>,
}

// SAFETY: the array owns its memory, as a `Vec<T>` does.
unsafe impl<T: Zeroable + Send> Send for HugePageArray<T> {}
// SAFETY: shared access only reads, as with `&[T]`.
unsafe impl<T: Zeroable + Sync> Sync for HugePageArray<T> {}

impl<T: Zeroable> HugePageArray<T> {
    /// `len` zeros. An array larger than the address space aborts as an allocation failure,
    /// as a `Vec` that large would.
    pub(crate) fn zeroed(len: usize) -> Self {
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        if bytes == 0 {
            return Self {
                ptr: NonNull::dangling(),
                len,
                layout: None,
            };
        }
        let align = if bytes >= HUGE_PAGE {
            HUGE_PAGE
        } else {
            std::mem::align_of::<T>().max(64)
        };
        let size = bytes.checked_next_multiple_of(align).unwrap_or(usize::MAX);
        let Ok(layout) = Layout::from_size_align(size, align) else {
            handle_alloc_error(Layout::new::<T>())
        };
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        if align == HUGE_PAGE {
            advise_huge_pages(raw, size);
        }
        // Zeroed after the advice, so that the first touch of each page faults in a huge one.
        // SAFETY: `raw` is valid for `size` bytes, and `T` is valid as all-zero bytes.
        unsafe { std::ptr::write_bytes(raw, 0, size) };
        Self {
            ptr: ptr.cast(),
            len,
            layout: Some(layout),
        }
    }

    /// The bytes the array holds.
    pub(crate) fn size_bytes(&self) -> usize {
        self.layout.map_or(0, |l| l.size())
    }
}

/// Asks the kernel to back the whole huge pages within `len` bytes from `start` (the
/// 2 MiB-aligned part of the range) with transparent huge pages, before they are first touched.
/// Advice only: where the kernel has no transparent huge pages or refuses, the memory stays as it
/// was, so this is harmless anywhere (and a no-op off Linux).
pub fn advise_huge_pages(start: *mut u8, len: usize) {
    let begin = (start as usize).next_multiple_of(HUGE_PAGE);
    let end = (start as usize).saturating_add(len) & !(HUGE_PAGE - 1);
    if end > begin {
        advise(begin as *mut u8, end - begin);
    }
}

#[cfg(target_os = "linux")]
fn advise(start: *mut u8, len: usize) {
    // SAFETY: `start..start + len` lies inside the caller's allocation; `madvise` with
    // `MADV_HUGEPAGE` changes how it is backed, never its contents or validity.
    unsafe { libc::madvise(start.cast(), len, libc::MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise(_start: *mut u8, _len: usize) {}

impl<T: Zeroable> Drop for HugePageArray<T> {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `zeroed` with this layout.
            unsafe { dealloc(self.ptr.as_ptr().cast(), layout) };
        }
    }
}

impl<T: Zeroable> Deref for HugePageArray<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` holds `len` initialised values (or is dangling with `len` 0 and no size).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> DerefMut for HugePageArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable + std::fmt::Debug> std::fmt::Debug for HugePageArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugePageArray")
            .field("len", &self.len)
            .finish()
    }
}

impl<T: Zeroable> Default for HugePageArray<T> {
    fn default() -> Self {
        Self::zeroed(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_of_any_size_start_zeroed_and_keep_what_is_written() {
        for len in [0, 1, 63, 4096, HUGE_PAGE / 4 + 3] {
            let mut array = HugePageArray::<u32>::zeroed(len);
            assert_eq!(array.len(), len);
            assert!(array.iter().all(|v| *v == 0));
            for (i, v) in array.iter_mut().enumerate() {
                *v = i as u32;
            }
            assert!(array.iter().enumerate().all(|(i, v)| *v == i as u32));
            assert!(array.size_bytes() >= len * 4);
        }
    }

    #[test]
    fn arrays_of_a_huge_page_or_more_are_aligned_to_one() {
        let array = HugePageArray::<u8>::zeroed(HUGE_PAGE + 1);
        assert_eq!(array.as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(array.size_bytes(), 2 * HUGE_PAGE);
    }
}
