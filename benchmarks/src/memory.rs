//! Memory for the in-memory benchmark data, allocated the way NumPy allocates large arrays:
//! advised for transparent huge pages (`madvise(MADV_HUGEPAGE)`). Quiver's operators and the
//! Python peers then read the same data from the same kind of pages (with 4 KiB pages, a scan
//! pays TLB misses that NumPy's arrays do not).

/// A copy of `values` in memory advised for huge pages (on Linux; elsewhere a plain copy).
pub fn huge_page_vec<T: Copy>(values: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(values.len());
    // Advised before the copy touches the pages, so that they are faulted in as huge pages.
    advise_huge_pages(out.as_mut_ptr().cast(), std::mem::size_of_val(values));
    out.extend_from_slice(values);
    out
}

/// Advises the huge-page-aligned part of `len` bytes from `start` for huge pages. A kernel
/// without transparent huge pages refuses, which leaves ordinary pages: harmless.
#[cfg(target_os = "linux")]
fn advise_huge_pages(start: *mut u8, len: usize) {
    const HUGE_PAGE: usize = 2 << 20;
    let begin = (start as usize).next_multiple_of(HUGE_PAGE);
    let end = (start as usize + len) & !(HUGE_PAGE - 1);
    if end > begin {
        // SAFETY: the range lies inside one live allocation, and the advice changes only how it
        // is backed, never its contents.
        unsafe {
            libc::madvise(begin as *mut libc::c_void, end - begin, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_start: *mut u8, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_holds_the_values() {
        let values: Vec<u32> = (0..3_000_000).collect();
        assert_eq!(huge_page_vec(&values), values);
        assert!(huge_page_vec::<f32>(&[]).is_empty());
    }
}
