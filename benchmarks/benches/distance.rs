//! Distance kernels at dims 128, 768 and 1536: one query against 10,000 rows, for every kernel
//! set the CPU supports (the best is what Quiver uses; scalar is the reference), over `f32` and
//! `f16` rows and over 8-bit codes (`distance_u8`, the kernels a loaded HNSW search's beam uses;
//! their throughput counts the codes' bytes).

// Criterion's macros generate undocumented items.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use quiver_benchmarks::random_vectors;
use quiver_operators::distance::available;

const ROWS: usize = 10_000;

fn kernels(c: &mut Criterion) {
    for dim in [128usize, 768, 1536] {
        let rows = random_vectors(ROWS, dim, 1);
        let rows16: Vec<f16> = rows.iter().map(|v| f16::from_f32(*v)).collect();
        let query = random_vectors(1, dim, 2);
        let mut out = vec![0.0f32; ROWS];
        let mut group = c.benchmark_group(format!("distance/dim{dim}"));
        group.throughput(Throughput::Bytes((ROWS * dim * 4) as u64));
        for k in available() {
            group.bench_function(BenchmarkId::new("l2_f32", k.name), |b| {
                b.iter(|| (k.l2_squared_batch)(&query, &rows, &mut out))
            });
            group.bench_function(BenchmarkId::new("dot_f32", k.name), |b| {
                b.iter(|| (k.dot_batch)(&query, &rows, &mut out))
            });
            group.bench_function(BenchmarkId::new("l2_f16", k.name), |b| {
                b.iter(|| (k.l2_squared_batch_f16)(&query, &rows16, &mut out))
            });
        }
        group.finish();
        // Codes of the rows' values (in [-1, 1]), one byte each.
        let codes: Vec<u8> = rows.iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
        let scales = vec![1.0 / 127.5; dim];
        let mut group = c.benchmark_group(format!("distance_u8/dim{dim}"));
        group.throughput(Throughput::Bytes((ROWS * dim) as u64));
        for k in available() {
            group.bench_function(BenchmarkId::new("l2_u8", k.name), |b| {
                b.iter(|| {
                    for (o, row) in out.iter_mut().zip(codes.chunks_exact(dim)) {
                        *o = (k.sq_l2_squared)(&query, &scales, row);
                    }
                })
            });
            group.bench_function(BenchmarkId::new("dot_u8", k.name), |b| {
                b.iter(|| {
                    for (o, row) in out.iter_mut().zip(codes.chunks_exact(dim)) {
                        *o = (k.sq_dot)(&query, row);
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
