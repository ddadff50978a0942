//! Memory for the in-memory benchmark data, allocated the way NumPy allocates large arrays:
//! advised for transparent huge pages (`madvise(MADV_HUGEPAGE)`). Quiver's operators and the
//! Python peers then read the same data from the same kind of pages (with 4 KiB pages, a scan
//! pays TLB misses that NumPy's arrays do not).

use quiver_operators::advise_huge_pages;

/// A copy of `values` in memory advised for huge pages (on Linux; elsewhere a plain copy).
pub fn huge_page_vec<T: Copy>(values: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(values.len());
    // Advised before the copy touches the pages, so that they are faulted in as huge pages.
    advise_huge_pages(out.as_mut_ptr().cast(), std::mem::size_of_val(values));
    out.extend_from_slice(values);
    out
}

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
