//! Reading the NumPy `.npy` files of `shared/data/minilm-50k` (little-endian `f16` and `i32`
//! matrices, format version 1).

use half::f16;

/// A row-major matrix read from an `.npy` file.
#[derive(Debug, Clone)]
pub struct Matrix<T> {
    /// Number of rows.
    pub rows: usize,
    /// Values per row.
    pub cols: usize,
    /// `rows * cols` values.
    pub data: Vec<T>,
}

impl<T: Copy> Matrix<T> {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

fn parse<'a>(bytes: &'a [u8], descr: &str) -> Result<(usize, usize, &'a [u8]), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an .npy file".into());
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).map_err(|e| e.to_string())?;
    if !header.contains(descr) || header.contains("'fortran_order': True") {
        return Err(format!("unexpected header {header}"));
    }
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("no shape")?;
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().map_err(|_| format!("bad shape {shape}")))
        .collect::<Result<_, _>>()?;
    let (rows, cols) = match dims.as_slice() {
        [r, c] => (*r, *c),
        [r] => (*r, 1),
        _ => return Err(format!("unexpected shape {shape}")),
    };
    Ok((rows, cols, &bytes[10 + header_len..]))
}

/// Reads an `f16` matrix.
pub fn read_f16(path: &std::path::Path) -> Result<Matrix<f16>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (rows, cols, body) = parse(&bytes, "'<f2'")?;
    let data = body
        .chunks_exact(2)
        .take(rows * cols)
        .map(|c| f16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(Matrix { rows, cols, data })
}

/// Reads an `i32` matrix.
pub fn read_i32(path: &std::path::Path) -> Result<Matrix<i32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (rows, cols, body) = parse(&bytes, "'<i4'")?;
    let data = body
        .chunks_exact(4)
        .take(rows * cols)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(Matrix { rows, cols, data })
}

/// The directory of the MiniLM embeddings (`../shared/data/minilm-50k` from the repository).
pub fn minilm_dir() -> std::path::PathBuf {
    crate::package_dir().join("../../shared/data/minilm-50k")
}
