"""The peers' side of the side-by-side comparison: times numpy, FAISS and hnswlib on the data the
Quiver side wrote, one thread each, and prints one JSON object of figures (seconds, recall).

Usage: peers.py <dir> <ef,ef,...> <passes>   (the directory holds base.npy, queries.npy,
clustered.npy, clustered_queries.npy, clustered_gt.npy as the Quiver side wrote them; hnswlib's
QPS at each ef is the median of <passes> timed passes over the queries)
"""

import json
import sys
import time

import numpy as np


def median_time(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(directory, ef_sweep, passes):
    import faiss
    import hnswlib

    faiss.omp_set_num_threads(1)
    base = np.load(f"{directory}/base.npy")
    queries = np.load(f"{directory}/queries.npy")
    k = 10
    out = {}

    out["numpy_read_s"] = median_time(lambda: base.sum(dtype=np.float32), 5)
    q0 = queries[:1]
    base_norms = (base * base).sum(axis=1)

    def numpy_single():
        d = base_norms - 2.0 * (base @ q0[0])
        np.argpartition(d, k)[:k]

    out["numpy_single_s"] = median_time(numpy_single, 5)

    flat = faiss.IndexFlatL2(base.shape[1])
    flat.add(base)
    out["faiss_flat_single_s"] = median_time(lambda: flat.search(q0, k), 5)
    out["faiss_flat_batch100_s"] = median_time(lambda: flat.search(queries[:100], k), 3)

    clustered = np.load(f"{directory}/clustered.npy")
    cq = np.load(f"{directory}/clustered_queries.npy")
    gt = np.load(f"{directory}/clustered_gt.npy")
    start = time.perf_counter()
    hnsw = hnswlib.Index(space="l2", dim=clustered.shape[1])
    hnsw.init_index(max_elements=clustered.shape[0], M=16, ef_construction=200)
    hnsw.set_num_threads(1)
    hnsw.add_items(clustered, np.arange(clustered.shape[0]))
    out["hnswlib_build_s"] = time.perf_counter() - start
    sweep = []
    for ef in ef_sweep:
        hnsw.set_ef(ef)

        def one_pass():
            for q in cq:
                hnsw.knn_query(q, k=k)

        elapsed = median_time(one_pass, passes)
        labels, _ = hnsw.knn_query(cq, k=k)
        recall = float(
            np.mean(
                [len(set(map(int, labels[i])) & set(map(int, gt[i][:k]))) / k for i in range(len(cq))]
            )
        )
        sweep.append({"ef": ef, "recall": recall, "qps": len(cq) / elapsed})
    out["hnswlib_sweep"] = sweep
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], [int(ef) for ef in sys.argv[2].split(",")], int(sys.argv[3]))
