#!/usr/bin/env python3
"""End-to-end benchmark: Quiver over Flight SQL against pgvector, Milvus Lite, LanceDB
and hnswlib, on the same data in one run, each system through the client its users use, with one
client and with several concurrent client processes.

Usage (normally through benchmarks/compare/e2e.sh, which makes the venv and builds the binary):

    python benchmarks/compare/e2e.py [--out DIR] [--datasets minilm,pkg,synthetic]
        [--minilm-rows 50000] [--minilm-queries 500] [--pkg-queries 500]
        [--synthetic-rows 1000000] [--synthetic-queries 1000] [--synthetic-dim 128]
        [--ef 10,16,32,64,128,256,512] [--clients 1,4]
        [--systems quiver,pgvector,milvus,lancedb,hnswlib]
        [--quiver-modes prepared,literal,literal-direct] [--quiver-bin PATH] [--quiver-load ingest|copy]
        [--warmup 20] [--max-seconds 60]
        [--selectivities 0.5,0.1,0.01,0.001] [--filter-ef 16,64,256] [--filter-clients 1]
        [--appends 0.01] [--append-batch 5] [--append-ef 64]

    # a smoke run (small data, short sweep, a debug build):
    QUIVER_BIN=~/.cache/quiver-target/debug/quiver python benchmarks/compare/e2e.py \
        --minilm-rows 5000 --minilm-queries 50 --synthetic-rows 3000 --synthetic-queries 50 \
        --ef 10,32,128 --out /tmp/e2e-smoke

What runs (k = 10, L2, every HNSW built with M = 16, ef_construction = 200):

- quiver/prepared: ADBC Flight SQL (adbc-driver-flightsql), one cursor per client that prepares
  `SELECT id FROM docs ORDER BY l2_distance(embedding, $1) LIMIT 10` once and executes it for
  every query, binding the vector (an Arrow FixedSizeList<float32> batch of one row);
- quiver/literal: the same cursor's `execute` with the vector written in the SQL text
  (`[0.1, 0.2, ...]`): what DB-API users write (ADBC's DB-API prepares each new text itself);
- quiver/literal-direct: the literal text through ADBC's low-level statement
  (`set_sql_query` + `execute_query`, one GetFlightInfo and one DoGet, no prepare);
- quiver/select1: a prepared `SELECT 1` over the same client;
- quiver/select1-flight: `SELECT 1` as a Flight SQL `CommandStatementQuery` (GetFlightInfo +
  DoGet) from the pyarrow.flight client of the floor: the server's cost of a statement beside
  the floor, without ADBC's;
- flight-floor: GetFlightInfo + DoGet against a trivial pyarrow.flight server (one tiny batch)
  started by this harness, with the pyarrow.flight client: the floor of a Flight round trip;
- pgvector: pgserver's bundled Postgres with pgvector over its Unix socket, psycopg 3, the
  vector bound as a parameter of a server-side prepared statement (binary format);
- milvus: Milvus Lite (pymilvus MilvusClient) on a local .db file; the Lite server runs on a
  thread of a host process, and the clients connect to its loopback URI;
- lancedb: LanceDB embedded, an IVF_HNSW_SQ index of one partition (as Quiver's `hnsw`);
- hnswlib: hnswlib in the client process (the bare search).

Filtered search: every row has a `category` in 0..999 (`id * 761 mod 1000`, so each value
holds a thousandth of the rows), and for each of `--selectivities` the systems that search with a
filter run `category < T` (T = selectivity * 1000) with each system's own filter: Quiver's and
pgvector's `WHERE` (pgvector with a B-tree on `category`, and `hnsw.iterative_scan =
relaxed_order` where its version has it), Milvus Lite's filter expression, LanceDB's
`where(..., prefilter=True)` with a B-tree scalar index, hnswlib's `filter` callback. Recall is
against the exact nearest rows among those the filter admits. Series are named
`<series> where <pct>`, at `--filter-ef` and `--filter-clients`.

The `pkg` data set (`../shared/data/pkg-text-50k`: 50,000 real package summaries' all-MiniLM-L6-v2
embeddings, 500 other summaries' as queries, exact ground truth shipped) has real filter columns
instead of `category`: `registry` (`pypi` or `npm`), `year` (NULL for npm) and `popular`, each
system storing them as its own types (with a B-tree on each in pgvector and LanceDB), and its
filtered searches are `registry = 'npm'`, `year >= 2025`, `popular` and `registry = 'pypi' AND
popular AND year >= 2024`, whatever share of the rows each admits (in the report); series `<series>
where <filter>`. Its rows carry no `category`, so no append stream runs on it.

Appends: after its other series, each system that takes writes runs its queries once more (one
client, `--append-ef`) while `--appends` of the rows (new rows, each a blend of a stored row and
a query, so they are near the queries) are written in batches of `--append-batch` between them,
spread over the run (untimed); series `<series> +appends`. Recall is against the exact nearest
rows among those stored when the query ran.

Index maintenance: then each system that optimises on request (Quiver's `OPTIMIZE docs` on a
connection of its own, LanceDB's `optimize()` on the table the client queries: both compact
files and bring the index up to date) runs it on a thread while one client keeps querying at
`--append-ef`, and then runs the queries once more (stopping `--max-seconds` after the
optimisation ended); series `<series> +optimize`, whose p50 and p99 are those of the queries that
ran during the optimisation (the ones after it are in the note).

Quiver's `ef` is the session setting `SET quiver.ef = N`, sent on each client's connection
(with ADBC's cookie middleware on; `--no-cookies` turns it off) before each sweep point; the
harness reads the setting back (`SHOW quiver.ef`, else `SELECT current_setting('quiver.ef')`)
and warns in the report when it did not stick.

Each sweep point: every client runs `--warmup` untimed queries, waits at a barrier, then runs
each query of the set once (client c starting at offset c * n / clients), timing each call; the
point stops early after `--max-seconds`. QPS is the queries completed by all clients over the
wall time from the first client's start to the last client's end; p50 and p99 are over every
timed call; recall@10 is over every result. Clients are separate processes (spawned).

Output in --out: results.json (every figure), results.md (the tables, the target checks and the
warnings, also printed), and recall_qps_<dataset>.png for each data set.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

K = 10
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 200
QUIVER_KNN_SQL = "SELECT id FROM docs{where} ORDER BY l2_distance(embedding, $1) LIMIT 10"
PG_KNN_SQL = "SELECT id FROM docs{where} ORDER BY embedding <-> %b LIMIT 10"
# Each row's category: a thousandth of the rows each, spread over the ids.
CATEGORIES = 1000
CATEGORY_STEP = 761
COOKIE_OPTION = "adbc.flight.sql.rpc.with_cookie_middleware"
# Bounded waits (seconds).
WORKER_START_TIMEOUT = 300
WORKER_IDLE_TIMEOUT = 7200
BARRIER_TIMEOUT = 600
SERVER_START_TIMEOUT = 120


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------


def exact_knn(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact L2 top-k (row indices, nearest first) by brute force in batches: a float32 matrix
    product picks candidates, which are then re-ranked in float64 (ties by index)."""
    n = base.shape[0]
    k = min(k, n)
    cand = min(n, k + 16)
    qbatch = 256
    bchunk = max(1024, (64 << 20) // (4 * qbatch))
    out = np.empty((len(queries), k), dtype=np.int64)
    norms = np.einsum("ij,ij->i", base, base, dtype=np.float32)
    for qs in range(0, len(queries), qbatch):
        q = np.ascontiguousarray(queries[qs : qs + qbatch], dtype=np.float32)
        best_d = np.full((len(q), 0), np.inf, dtype=np.float32)
        best_i = np.zeros((len(q), 0), dtype=np.int64)
        for bs in range(0, n, bchunk):
            chunk = base[bs : bs + bchunk]
            d = norms[bs : bs + bchunk][None, :] - 2.0 * (q @ chunk.T)
            c = min(cand, d.shape[1])
            idx = np.argpartition(d, c - 1, axis=1)[:, :c]
            dd = np.take_along_axis(d, idx, axis=1)
            best_d = np.concatenate([best_d, dd], axis=1)
            best_i = np.concatenate([best_i, idx + bs], axis=1)
            if best_d.shape[1] > cand:
                keep = np.argpartition(best_d, cand - 1, axis=1)[:, :cand]
                best_d = np.take_along_axis(best_d, keep, axis=1)
                best_i = np.take_along_axis(best_i, keep, axis=1)
        for r in range(len(q)):
            ids = np.unique(best_i[r])
            diff = base[ids].astype(np.float64) - q[r].astype(np.float64)
            dist = np.einsum("ij,ij->i", diff, diff)
            order = np.lexsort((ids, dist))[:k]
            out[qs + r] = ids[order]
    return out


class Column:
    """A scalar column of a data set's rows (filters read it), as each system declares it."""

    def __init__(self, name, values, quiver, pg, pg_copy, milvus, milvus_null=None):
        self.name = name
        self.values = values  # a pyarrow array, one value a row
        self.quiver = quiver  # Quiver's SQL type
        self.pg = pg  # Postgres's type, and its COPY BINARY type name
        self.pg_copy = pg_copy
        self.milvus = milvus  # pymilvus add_field arguments after the name: (DataType name, kwargs)
        self.milvus_null = milvus_null  # what Milvus stores for a NULL (its fields are not nullable)

    def python(self):
        return self.values.to_pylist()


class Filter:
    """One filtered search: each system's own spelling of the filter, and the rows it admits."""

    def __init__(self, label, sql, milvus, mask):
        self.label = label  # as series names show it: `<series> where <label>`
        self.sql = sql  # Quiver's, pgvector's and LanceDB's
        self.milvus = milvus
        self.mask = mask
        self.selectivity = float(mask.mean())


class Dataset:
    def __init__(self, name, base, queries, gt, source, columns=None, filters=None):
        self.name = name
        self.base = base
        self.queries = queries
        self.gt = gt
        self.source = source
        self._columns = columns
        self._filters = filters

    def columns(self):
        """The scalar columns every system stores beside `id` and `embedding`."""
        if self._columns is not None:
            return self._columns
        import pyarrow as pa

        return [Column("category", pa.array(categories(self.rows)), "INT NOT NULL", "int NOT NULL", "int4",
                       ("INT32", {}))]

    def filters(self, selectivities):
        """The filtered searches: the data set's own, else `category < T` at `selectivities`."""
        if self._filters is not None:
            return self._filters
        cats = categories(self.rows)
        out = []
        for selectivity in selectivities:
            t = threshold(selectivity)
            out.append(Filter(f"{selectivity * 100:g}%", f"category < {t}", f"category < {t}", cats < t))
        return out

    @property
    def appendable(self):
        """Whether the append stream runs on it: its new rows carry only a `category`."""
        return self._columns is None

    @property
    def rows(self):
        return int(self.base.shape[0])

    @property
    def dim(self):
        return int(self.base.shape[1])


def load_minilm(directory: Path, rows: int, nq: int) -> Dataset:
    base_all = np.load(directory / "base.f16.npy", mmap_mode="r")
    q_all = np.load(directory / "queries.f16.npy")
    rows = min(rows, base_all.shape[0])
    nq = min(nq, q_all.shape[0])
    base = np.ascontiguousarray(base_all[:rows], dtype=np.float32)
    queries = np.ascontiguousarray(q_all[:nq], dtype=np.float32)
    gt_path = directory / "gt.l2.top100.npy"
    if rows == base_all.shape[0] and gt_path.exists():
        gt = np.load(gt_path)[:nq, :K].astype(np.int64)
        source = "gt.l2.top100.npy (exact L2 ground truth shipped with the data)"
    else:
        t = time.perf_counter()
        gt = exact_knn(base, queries, K)
        source = f"brute force over the first {rows} rows ({time.perf_counter() - t:.1f} s)"
    return Dataset("minilm", base, queries, gt, source)


def load_pkg(directory: Path, nq: int) -> Dataset:
    """pkg-text-50k: real package summaries' embeddings, with their registry, year and
    popularity as filter columns, and filters of the selectivities they have."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    corpus = pq.read_table(directory / "corpus.parquet").sort_by("id")
    queries = pq.read_table(directory / "queries.parquet").sort_by("qid")
    nq = min(nq, queries.num_rows)

    def vectors(column):
        dim = column.type.list_size
        flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
        return np.ascontiguousarray(flat.reshape(-1, dim), dtype=np.float32)

    base = vectors(corpus.column("embedding").combine_chunks())
    qs = vectors(queries.column("embedding").combine_chunks())[:nq]
    if corpus.column("id").to_numpy().tolist() != list(range(corpus.num_rows)):
        raise RuntimeError("pkg-text-50k: ids are not 0..rows-1")
    gt = np.load(directory / "gt.l2.top100.npy")[:nq, :K].astype(np.int64)
    registry = corpus.column("registry").combine_chunks().cast(pa.string())
    year = corpus.column("year").combine_chunks().cast(pa.int32())
    popular = corpus.column("popular").combine_chunks().cast(pa.bool_())
    columns = [
        Column("registry", registry, "VARCHAR NOT NULL", "text NOT NULL", "text", ("VARCHAR", {"max_length": 16})),
        Column("year", year, "INT", "int", "int4", ("INT32", {}), milvus_null=0),
        Column("popular", popular, "BOOLEAN NOT NULL", "boolean NOT NULL", "bool", ("BOOL", {})),
    ]
    reg = np.asarray(registry.to_pylist())
    yr = year.fill_null(0).to_numpy()
    pop = popular.to_numpy(zero_copy_only=False)
    filters = [
        Filter("registry = 'npm'", "registry = 'npm'", 'registry == "npm"', reg == "npm"),
        Filter("year >= 2025", "year >= 2025", "year >= 2025", yr >= 2025),
        Filter("popular", "popular = true", "popular == true", pop),
        Filter("pypi, popular, year >= 2024", "registry = 'pypi' AND popular = true AND year >= 2024",
               'registry == "pypi" and popular == true and year >= 2024', (reg == "pypi") & pop & (yr >= 2024)),
    ]
    source = "gt.l2.top100.npy (exact L2 ground truth shipped with the data)"
    return Dataset("pkg", base, qs, gt, source, columns, filters)


SYNTHETIC_VERSION = 1
SYNTHETIC_CHUNK = 65536


def make_synthetic(rows, nq, dim, clusters, seed, cache_dir: Path | None) -> Dataset:
    """Clustered Gaussian data: `clusters` centres uniform in [-1, 1)^dim; a point is a random
    cluster's centre plus a Gaussian on a random 8-dimensional linear subspace through it (std
    about 0.1 a dimension) plus isotropic noise (std 0.01). Queries are drawn the same way from
    the same clusters. Chunks use their own seeds, so the data does not depend on the chunking."""
    clusters = max(1, min(clusters, max(1, rows // 100)))
    key = f"synthetic-v{SYNTHETIC_VERSION}-r{rows}-q{nq}-d{dim}-c{clusters}-s{seed}"
    if cache_dir is not None:
        d = cache_dir / key
        if (d / "gt.npy").exists():
            log(f"synthetic data from cache {d}")
            return Dataset(
                "synthetic",
                np.load(d / "base.npy"),
                np.load(d / "queries.npy"),
                np.load(d / "gt.npy"),
                f"brute force (cached in {d})",
            )
    rank = min(8, dim)
    rng = np.random.default_rng([seed, 0])
    centres = rng.uniform(-1.0, 1.0, (clusters, dim)).astype(np.float32)
    # Each cluster's linear map from R^rank: entries N(0, 0.1^2 / rank), so each dimension
    # of the point has a std of about 0.1.
    maps = (rng.standard_normal((clusters, dim, rank)) * (0.1 / math.sqrt(rank))).astype(np.float32)

    def draw(n, stream):
        out = np.empty((n, dim), dtype=np.float32)
        for ci, start in enumerate(range(0, n, SYNTHETIC_CHUNK)):
            m = min(SYNTHETIC_CHUNK, n - start)
            r = np.random.default_rng([seed, stream, ci])
            assign = r.integers(0, clusters, m)
            z = r.standard_normal((m, rank)).astype(np.float32)
            noise = (r.standard_normal((m, dim)) * 0.01).astype(np.float32)
            pts = centres[assign] + noise
            for c in np.unique(assign):
                sel = assign == c
                pts[sel] += z[sel] @ maps[c].T
            out[start : start + m] = pts
        return out

    t = time.perf_counter()
    base = draw(rows, 1)
    queries = draw(nq, 2)
    log(f"synthetic data generated in {time.perf_counter() - t:.1f} s; exact ground truth...")
    t = time.perf_counter()
    gt = exact_knn(base, queries, K)
    source = f"brute force ({time.perf_counter() - t:.1f} s)"
    if cache_dir is not None:
        d = cache_dir / key
        tmp = cache_dir / (key + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        np.save(tmp / "base.npy", base)
        np.save(tmp / "queries.npy", queries)
        np.save(tmp / "gt.npy", gt)
        if not d.exists():
            tmp.rename(d)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return Dataset("synthetic", base, queries, gt, source)


def categories(n: int) -> np.ndarray:
    """Each row's `category`: `id * 761 mod 1000` (761 is prime to 1000, so every value holds
    a thousandth of the rows)."""
    return ((np.arange(n, dtype=np.int64) * CATEGORY_STEP) % CATEGORIES).astype(np.int32)


def threshold(selectivity: float) -> int:
    """The T of `category < T` that admits `selectivity` of the rows."""
    return max(1, round(selectivity * CATEGORIES))


def where_clause(filt) -> str:
    """The `WHERE` of a client spec's `filter` (see `run_dataset`), or none."""
    return "" if filt is None else f" WHERE {filt['sql']}"


def filtered_gt(ds: "Dataset", mask: np.ndarray) -> np.ndarray:
    """The exact `K` nearest ids among the rows `mask` admits."""
    admitted = np.flatnonzero(mask)
    return admitted[exact_knn(ds.base[admitted], ds.queries, K)]


def appended_rows(ds: "Dataset", fraction: float) -> np.ndarray:
    """`fraction` of the rows again as new rows: row j is the mean of stored row `j * 97 mod
    rows` and query `j mod queries`, so the new rows are near the queries."""
    n = max(1, round(fraction * ds.rows))
    j = np.arange(n)
    return np.ascontiguousarray(
        0.5 * ds.base[(j * 97) % ds.rows] + 0.5 * ds.queries[j % len(ds.queries)], dtype=np.float32
    )


def appended_table(first_id: int, vectors: np.ndarray):
    """The rows `vectors` as an Arrow table of `docs`, ids from `first_id`."""
    import pyarrow as pa

    n, dim = vectors.shape
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), dim)
    cats = ((ids * CATEGORY_STEP) % CATEGORIES).astype(np.int32)
    return pa.table({"id": pa.array(ids), "category": pa.array(cats), "embedding": emb})


def stream_recall(ds: "Dataset", appended: np.ndarray, runs) -> float | None:
    """Recall@10 of a stream's results, each against the exact nearest rows among the stored
    ones and the first `a` appended rows, `a` as many as were written before that query."""
    recalls = []
    for r in runs:
        for (j, ids), a in zip(r["ids"], r["appended"]):
            q = ds.queries[j]
            base_ids = ds.gt[j][:K].astype(np.int64)
            d_base = ((ds.base[base_ids] - q) ** 2).sum(axis=1)
            d_new = ((appended[:a] - q) ** 2).sum(axis=1)
            ids_all = np.concatenate([base_ids, ds.rows + np.arange(a)])
            d_all = np.concatenate([d_base, d_new])
            truth = set(int(x) for x in ids_all[np.argsort(d_all, kind="stable")[:K]])
            recalls.append(len(truth.intersection(int(x) for x in (ids or [])[:K])) / K)
    return float(np.mean(recalls)) if recalls else None


def arrow_table(ds: "Dataset"):
    import pyarrow as pa

    n, dim = ds.base.shape
    values = pa.array(ds.base.reshape(-1), type=pa.float32())
    emb = pa.FixedSizeListArray.from_arrays(values, dim)
    columns = {"id": pa.array(np.arange(n, dtype=np.int64))}
    columns.update({c.name: c.values for c in ds.columns()})
    columns["embedding"] = emb
    return pa.table(columns)


def vector_literal(q: np.ndarray) -> str:
    """`[0.1, 0.2, ...]`: each float32 value in the shortest text that reads back to it."""
    return "[" + ", ".join(np.format_float_positional(np.float32(x), unique=True, trim="0") for x in q) + "]"


def batch_rows(dim: int) -> int:
    """Rows per batch for loading: about 8 MiB of f32 vectors (ADBC's Flight client sends
    messages of at most 16 MiB)."""
    return max(1, (8 << 20) // (4 * dim))


# --------------------------------------------------------------------------------------------
# Clients (constructed inside worker processes)
# --------------------------------------------------------------------------------------------


class QuiverClient:
    """ADBC Flight SQL, as Quiver's users query it."""

    def __init__(self, spec, queries):
        import adbc_driver_flightsql.dbapi as flight_sql
        import pyarrow as pa

        self.mode = spec["mode"]
        cookies = "true" if spec.get("cookies", True) else "false"
        self.conn = flight_sql.connect(spec["uri"], db_kwargs={COOKIE_OPTION: cookies}, autocommit=True)
        self.cur = self.conn.cursor()  # the measured cursor
        self.ctl = self.conn.cursor()  # SET / SHOW, so the measured cursor stays prepared
        self.check_method = spec.get("check_method")
        dim = queries.shape[1]
        where = where_clause(spec.get("filter"))
        self.sql = QUIVER_KNN_SQL.format(where=where)
        if self.mode == "prepared":
            self.inputs = [
                pa.record_batch(
                    [pa.FixedSizeListArray.from_arrays(pa.array(q, type=pa.float32()), dim)],
                    names=["q"],
                )
                for q in queries
            ]
            self.cur.adbc_prepare(self.sql)
        elif self.mode in ("literal", "literal-direct"):
            self.inputs = [
                f"SELECT id FROM docs{where} ORDER BY l2_distance(embedding, {vector_literal(q)}) LIMIT 10"
                for q in queries
            ]
            if self.mode == "literal-direct":
                import adbc_driver_manager

                self.stmt = adbc_driver_manager.AdbcStatement(self.conn.adbc_connection)
                self.pa = pa
        elif self.mode == "select1":
            self.cur.adbc_prepare("SELECT 1")
        else:
            raise ValueError(f"unknown Quiver mode {self.mode}")

    def set_param(self, ef):
        info = {"requested": ef, "applied": None, "observed": None, "error": None}
        try:
            self.ctl.execute(f"SET quiver.ef = {int(ef)}")
            try:
                self.ctl.fetchall()
            except Exception:
                pass
        except Exception as e:  # noqa: BLE001
            info["error"] = f"SET failed: {e}"
            info["applied"] = False
            return info
        observed, method, err = read_quiver_setting(self.ctl, "quiver.ef", self.check_method)
        info["observed"], info["check"] = observed, method
        if observed is None:
            info["error"] = f"could not read quiver.ef back: {err}"
        else:
            try:
                info["applied"] = int(float(observed)) == int(ef)
            except ValueError:
                info["applied"] = False
        return info

    def append(self, table):
        self.ctl.adbc_ingest("docs", table, mode="append")

    def optimize(self, uri):
        """`OPTIMIZE docs` on a connection of its own (the measured one keeps querying)."""
        import adbc_driver_flightsql.dbapi as flight_sql

        with flight_sql.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("OPTIMIZE docs")
            cur.fetchall()

    def query(self, i):
        if self.mode == "prepared":
            self.cur.execute(self.sql, self.inputs[i])
            return self.cur.fetch_arrow_table().column(0).to_pylist()
        if self.mode == "literal":
            self.cur.execute(self.inputs[i])
            return self.cur.fetch_arrow_table().column(0).to_pylist()
        if self.mode == "literal-direct":
            self.stmt.set_sql_query(self.inputs[i])
            handle, _ = self.stmt.execute_query()
            table = self.pa.RecordBatchReader._import_from_c(handle.address).read_all()
            return table.column(0).to_pylist()
        self.cur.execute("SELECT 1")
        self.cur.fetch_arrow_table()
        return None

    def close(self):
        for c in (getattr(self, "stmt", None), self.cur, self.ctl, self.conn):
            try:
                if c is not None:
                    c.close()
            except Exception:
                pass


def read_quiver_setting(cur, name, method=None):
    """Reads a session setting back; returns (value or None, method, last error)."""
    attempts = [
        ("show", f"SHOW {name}"),
        ("current_setting", f"SELECT current_setting('{name}')"),
    ]
    if method:
        attempts = [a for a in attempts if a[0] == method] or attempts
    err = None
    for m, sql in attempts:
        try:
            cur.execute(sql)
            table = cur.fetch_arrow_table()
            if table.num_rows == 0:
                err = f"{sql}: no rows"
                continue
            row = {c: table.column(c)[0].as_py() for c in table.column_names}
            # SHOW gives (name, value) or one column; take the column called value/setting,
            # else the last one.
            for key in ("value", "setting", name):
                if key in row:
                    return str(row[key]), m, None
            return str(list(row.values())[-1]), m, None
        except Exception as e:  # noqa: BLE001
            err = f"{sql}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None, None, err


def protobuf_field(number: int, value: bytes) -> bytes:
    """A length-delimited protobuf field (a string or a message), tag and length as varints."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        return bytes(out + bytes([n]))

    return varint(number << 3 | 2) + varint(len(value)) + value


def flight_sql_query(sql: str) -> bytes:
    """A Flight SQL `CommandStatementQuery` of `sql` in its `google.protobuf.Any`, as a Flight
    descriptor's command (pyarrow has no Flight SQL client)."""
    type_url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return protobuf_field(1, type_url) + protobuf_field(2, protobuf_field(1, sql.encode()))


class FloorClient:
    """GetFlightInfo + DoGet with the pyarrow.flight client: against the trivial pyarrow.flight
    server, or, with a `command` in the spec, that command against another server."""

    def __init__(self, spec, queries):
        import pyarrow.flight as flight

        self.client = flight.FlightClient(spec["uri"])
        self.descriptor = flight.FlightDescriptor.for_command(spec.get("command", b"one"))

    def set_param(self, p):
        return {}

    def query(self, i):
        info = self.client.get_flight_info(self.descriptor)
        self.client.do_get(info.endpoints[0].ticket).read_all()
        return None

    def close(self):
        self.client.close()


class PgClient:
    def __init__(self, spec, queries):
        import psycopg
        from pgvector.psycopg import register_vector

        self.conn = psycopg.connect(spec["uri"], autocommit=True)
        register_vector(self.conn)
        for stmt in spec.get("session", []):
            self.conn.execute(stmt)
        self.inputs = [np.ascontiguousarray(q, dtype=np.float32) for q in queries]
        self.sql = PG_KNN_SQL.format(where=where_clause(spec.get("filter")))

    def set_param(self, ef):
        self.conn.execute(f"SET hnsw.ef_search = {int(ef)}")
        observed = self.conn.execute("SHOW hnsw.ef_search").fetchone()[0]
        return {"requested": ef, "observed": observed, "applied": int(observed) == int(ef)}

    def append(self, table):
        rows = table.to_pydict()
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO docs (id, category, embedding) VALUES (%s, %s, %s)",
                [(i, c, np.asarray(v, dtype=np.float32)) for i, c, v in zip(rows["id"], rows["category"], rows["embedding"])],
            )

    def query(self, i):
        rows = self.conn.execute(self.sql, (self.inputs[i],), prepare=True).fetchall()
        return [r[0] for r in rows]

    def close(self):
        self.conn.close()


class MilvusClientWrap:
    def __init__(self, spec, queries):
        from pymilvus import MilvusClient

        self.client = MilvusClient(uri=spec["uri"])
        self.inputs = [q.tolist() for q in queries]
        self.params = {"metric_type": "L2", "params": {"ef": 64}}
        filt = spec.get("filter")
        self.filter = "" if filt is None else filt["milvus"]

    def set_param(self, ef):
        self.params = {"metric_type": "L2", "params": {"ef": int(ef)}}
        return {"requested": ef, "applied": True}

    def append(self, table):
        self.client.insert("docs", table.to_pylist())

    def query(self, i):
        res = self.client.search(
            "docs",
            data=[self.inputs[i]],
            anns_field="embedding",
            limit=K,
            search_params=self.params,
            output_fields=["id"],
            filter=self.filter,
        )
        return [hit["id"] for hit in res[0]]

    def close(self):
        try:
            self.client.close()
        except Exception:
            pass


class LanceClient:
    def __init__(self, spec, queries):
        import lancedb

        self.db = lancedb.connect(spec["path"])
        self.table = self.db.open_table("docs")
        self.inputs = [np.ascontiguousarray(q, dtype=np.float32) for q in queries]
        self.ef = 64
        self.filter = spec.get("filter")

    def set_param(self, ef):
        self.ef = int(ef)
        return {"requested": ef, "applied": True}

    def append(self, table):
        self.table.add(table)

    def optimize(self, _path):
        """LanceDB's `optimize` (compaction and index optimisation), through the table the
        queries use: a table opened elsewhere is not seen by this one, which checks for newer
        versions only with a read-consistency interval."""
        self.table.optimize()

    def query(self, i):
        search = self.table.search(self.inputs[i], vector_column_name="embedding")
        if self.filter is not None:
            search = search.where(self.filter["sql"], prefilter=True)
        t = (
            search.distance_type("l2")
            .limit(K)
            .ef(self.ef)
            .select(["id", "_distance"])  # naming _distance spares a warning log line per query
            .to_arrow()
        )
        return t.column("id").to_pylist()

    def close(self):
        pass


class HnswlibClient:
    def __init__(self, spec, queries):
        import hnswlib

        self.index = hnswlib.Index(space="l2", dim=queries.shape[1])
        self.index.load_index(spec["path"], max_elements=spec["rows"] + spec.get("room", 0))
        self.index.set_num_threads(1)
        self.inputs = [np.ascontiguousarray(q, dtype=np.float32) for q in queries]
        filt = spec.get("filter")
        self.filter = None
        if filt is not None:
            admitted = np.load(filt["mask_path"])
            self.filter = lambda label: bool(label < len(admitted) and admitted[label])

    def set_param(self, ef):
        self.index.set_ef(int(ef))
        return {"requested": ef, "applied": True}

    def append(self, table):
        rows = table.to_pydict()
        self.index.add_items(np.asarray(rows["embedding"], dtype=np.float32), np.asarray(rows["id"]))

    def query(self, i):
        labels, _ = self.index.knn_query(self.inputs[i], k=K, filter=self.filter)
        return labels[0].tolist()

    def close(self):
        pass


CLIENTS = {
    "quiver": QuiverClient,
    "floor": FloorClient,
    "pgvector": PgClient,
    "milvus": MilvusClientWrap,
    "lancedb": LanceClient,
    "hnswlib": HnswlibClient,
}


def worker_main(spec, queries_path, conn, barrier, offset):
    """One client process: builds its client, then serves commands from the parent."""
    try:
        queries = np.load(queries_path)
        client = CLIENTS[spec["kind"]](spec, queries)
        conn.send(("ok", None))
    except Exception:  # noqa: BLE001
        conn.send(("error", traceback.format_exc()))
        return
    n = len(queries)
    order = [(offset + j) % n for j in range(n)]
    try:
        for _ in range(100000):  # bounded: one command per sweep step
            if not conn.poll(WORKER_IDLE_TIMEOUT):
                break
            cmd, arg = conn.recv()
            if cmd == "close":
                break
            try:
                if cmd == "param":
                    conn.send(("ok", client.set_param(arg)))
                elif cmd == "run":
                    warmup, max_seconds = arg
                    for j in order[:warmup]:
                        client.query(j)
                    barrier.wait(BARRIER_TIMEOUT)
                    lat = []
                    ids = []
                    truncated = False
                    t0 = time.perf_counter()
                    deadline = t0 + max_seconds
                    for j in order:
                        s = time.perf_counter()
                        r = client.query(j)
                        e = time.perf_counter()
                        lat.append(e - s)
                        ids.append((j, r))
                        if e > deadline and len(lat) < n:
                            truncated = True
                            break
                    t1 = time.perf_counter()
                    conn.send(("ok", {"t0": t0, "t1": t1, "lat": lat, "ids": ids, "truncated": truncated}))
                elif cmd == "stream":
                    warmup, max_seconds, appends_path, first_id, batch = arg
                    appended_vectors = np.load(appends_path)
                    batches = -(-len(appended_vectors) // batch)
                    every = max(1, n // (batches + 1))
                    for j in order[:warmup]:
                        client.query(j)
                    lat, ids, appended = [], [], []
                    done = 0
                    t0 = time.perf_counter()
                    deadline = t0 + max_seconds
                    truncated = False
                    for t, j in enumerate(order):
                        if t > 0 and t % every == 0 and done < len(appended_vectors):
                            chunk = appended_vectors[done : done + batch]
                            client.append(appended_table(first_id + done, chunk))
                            done += len(chunk)
                        s_ = time.perf_counter()
                        r = client.query(j)
                        e = time.perf_counter()
                        lat.append(e - s_)
                        ids.append((j, r))
                        appended.append(done)
                        if e > deadline and len(lat) < n:
                            truncated = True
                            break
                    t1 = time.perf_counter()
                    conn.send(("ok", {"t0": t0, "t1": t1, "lat": lat, "ids": ids, "appended": appended,
                                      "truncated": truncated}))
                elif cmd == "optimize":
                    warmup, max_seconds, target = arg
                    conn.send(("ok", optimize_stream(client, order, warmup, max_seconds, target)))
                else:
                    conn.send(("error", f"unknown command {cmd}"))
            except Exception:  # noqa: BLE001
                try:
                    barrier.abort()
                except Exception:
                    pass
                conn.send(("error", traceback.format_exc()))
    finally:
        client.close()


def optimize_stream(client, order, warmup, max_seconds, target):
    """Runs `client.optimize(target)` on a thread while the client keeps querying, then as many
    queries again after it ended; each query marked with whether it started while the
    optimisation ran."""
    import threading

    for j in order[:warmup]:
        client.query(j)
    state = {"start": None, "end": None, "error": None}

    def run():
        state["start"] = time.perf_counter()
        try:
            client.optimize(target)
        except Exception as e:  # noqa: BLE001
            state["error"] = f"{type(e).__name__}: {e}"[:2000]
        state["end"] = time.perf_counter()

    thread = threading.Thread(target=run, daemon=True)
    lat, ids, during = [], [], []
    t0 = time.perf_counter()
    thread.start()
    after, t, truncated = 0, 0, False
    while after < len(order):
        j = order[t % len(order)]
        t += 1
        running = state["end"] is None
        s_ = time.perf_counter()
        r = client.query(j)
        e = time.perf_counter()
        lat.append(e - s_)
        ids.append((j, r))
        during.append(running)
        after += 0 if running else 1
        # The queries after the optimisation stop at --max-seconds after it ended.
        if not running and e > state["end"] + max_seconds:
            truncated = after < len(order)
            break
    thread.join()
    t1 = time.perf_counter()
    return {"t0": t0, "t1": t1, "lat": lat, "ids": ids, "during": during, "truncated": truncated,
            "optimize_s": (state["end"] or t1) - (state["start"] or t0), "optimize_error": state["error"]}


class WorkerGroup:
    """`n` client processes of one spec (spawned, so no thread or runtime is forked)."""

    def __init__(self, spec, n, queries_path, nq):
        self.ctx = mp.get_context("spawn")
        self.barrier = self.ctx.Barrier(n)
        self.procs, self.conns = [], []
        for c in range(n):
            parent, child = self.ctx.Pipe()
            p = self.ctx.Process(
                target=worker_main,
                args=(spec, str(queries_path), child, self.barrier, (c * nq) // n),
                daemon=True,
            )
            p.start()
            self.procs.append(p)
            self.conns.append(parent)
        try:
            self.gather(WORKER_START_TIMEOUT, "start")
        except Exception:
            self.close()
            raise

    def gather(self, timeout, what):
        out = []
        deadline = time.monotonic() + timeout
        errors = []
        for c in self.conns:
            left = max(0.1, deadline - time.monotonic())
            if not c.poll(left):
                errors.append(f"client timed out ({timeout:.0f} s) in {what}")
                continue
            try:
                status, value = c.recv()
            except EOFError:
                errors.append(f"client process exited during {what}")
                continue
            if status != "ok":
                errors.append(value)
            else:
                out.append(value)
        if errors:
            raise RuntimeError(f"{what}: " + "\n".join(str(e) for e in errors))
        return out

    def command(self, cmd, arg, timeout, what):
        for c in self.conns:
            c.send((cmd, arg))
        return self.gather(timeout, what)

    def close(self):
        for c in self.conns:
            try:
                c.send(("close", None))
            except Exception:
                pass
        for p in self.procs:
            p.join(timeout=15)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


def summarize(runs, gt):
    lat = np.concatenate([np.asarray(r["lat"]) for r in runs]) if runs else np.array([])
    n = int(lat.size)
    wall = max(r["t1"] for r in runs) - min(r["t0"] for r in runs)
    recalls = []
    for r in runs:
        for j, ids in r["ids"]:
            if ids is None:
                continue
            truth = set(int(x) for x in gt[j][:K])
            recalls.append(len(truth.intersection(int(x) for x in ids[:K])) / K)
    return {
        "n": n,
        "wall_s": wall,
        "qps": n / wall if wall > 0 else None,
        "p50_ms": float(np.percentile(lat, 50) * 1e3) if n else None,
        "p99_ms": float(np.percentile(lat, 99) * 1e3) if n else None,
        "mean_ms": float(lat.mean() * 1e3) if n else None,
        "recall": float(np.mean(recalls)) if recalls else None,
        "truncated": any(r["truncated"] for r in runs),
    }


def measure(spec, series, clients, params, ds_ctx, args, results, warnings):
    """Runs one client spec at `clients` clients over the sweep; appends points to results."""
    nq = ds_ctx["nq"]
    log(f"  {series}: {clients} client(s)")
    group = None
    not_stuck = []
    try:
        group = WorkerGroup(spec, clients, ds_ctx["queries_path"], nq)
        for p in params:
            point = {"series": series, "clients": clients, "param": p}
            try:
                if p is not None:
                    infos = group.command("param", p, 120, f"set {p}")
                    point["param_info"] = infos[0] if infos else None
                    applied = [i.get("applied") for i in infos]
                    point["param_applied"] = (
                        None if any(a is None for a in applied) else all(bool(a) for a in applied)
                    )
                    if point["param_applied"] is not True:
                        not_stuck.append((p, infos[0] if infos else None))
                runs = group.command(
                    "run",
                    (min(args.warmup, nq), args.max_seconds),
                    args.max_seconds + 600,
                    f"run {p}",
                )
                point.update(summarize(runs, ds_ctx["gt"]))
                rec = point["recall"]
                log(
                    f"    param={p}: qps={point['qps']:.1f} p50={point['p50_ms']:.2f} ms "
                    f"p99={point['p99_ms']:.2f} ms recall={'-' if rec is None else f'{rec:.3f}'}"
                    + (" (truncated)" if point["truncated"] else "")
                )
            except Exception as e:  # noqa: BLE001
                point["error"] = str(e)[-2000:]
                log(f"    param={p}: FAILED: {str(e)[-500:]}")
                results.append(point)
                break  # the group may be in a broken state (barrier): stop this sweep
            results.append(point)
    except Exception as e:  # noqa: BLE001
        results.append({"series": series, "clients": clients, "param": None, "error": str(e)[-2000:]})
        log(f"    FAILED: {str(e)[-800:]}")
    finally:
        if group is not None:
            group.close()
        if not_stuck:
            warnings.append(
                f"{ds_ctx['name']}: {series} ({clients} client(s)): the setting did not stick at "
                f"{', '.join(str(p) for p, _ in not_stuck)} (first read-back: {not_stuck[0][1]})"
            )


def one_client_point(spec, series, ds_ctx, args, results, point, run):
    """Runs `run(group, point)` on one client of `spec` at `--append-ef`, recording its figures
    (or its failure) in `point`, which it appends to results."""
    point.update({"series": series, "clients": 1, "param": args.append_ef})
    group = None
    try:
        group = WorkerGroup(spec, 1, ds_ctx["queries_path"], ds_ctx["nq"])
        infos = group.command("param", args.append_ef, 120, "set ef")
        point["param_applied"] = all(bool(i.get("applied")) for i in infos)
        run(group, point)
    except Exception as e:  # noqa: BLE001
        point["error"] = str(e)[-2000:]
        log(f"    FAILED: {str(e)[-500:]}")
    finally:
        if group is not None:
            group.close()
    results.append(point)


def measure_stream(spec, series, ds, appended, ds_ctx, args, results):
    """Runs one client of `spec` once over the queries at `--append-ef` while the rows
    `appended` are written between them (see the module docs); appends the point to results."""
    log(f"  {series}: 1 client, {len(appended)} rows appended in batches of {args.append_batch}")

    def run(group, point):
        runs = group.command(
            "stream",
            (min(args.warmup, ds_ctx["nq"]), args.max_seconds, str(ds_ctx["appends_path"]), ds.rows, args.append_batch),
            args.max_seconds + 600,
            "stream",
        )
        point.update(summarize(runs, ds_ctx["gt"]))
        point["recall"] = stream_recall(ds, appended, runs)
        # The queries' own time: the writes between them are not timed.
        point["qps"] = point["n"] / sum(sum(r["lat"]) for r in runs)
        log(f"    qps={point['qps']:.1f} p50={point['p50_ms']:.2f} ms p99={point['p99_ms']:.2f} ms "
            f"recall={point['recall']:.3f}")

    one_client_point(spec, series, ds_ctx, args, results, {"appended_rows": len(appended)}, run)


# --------------------------------------------------------------------------------------------
# Systems (set up in the parent process)
# --------------------------------------------------------------------------------------------


def floor_server_main(conn):
    import pyarrow as pa
    import pyarrow.flight as flight

    table = pa.table({"one": pa.array([1], type=pa.int64())})

    class Tiny(flight.FlightServerBase):
        def get_flight_info(self, context, descriptor):
            ep = flight.FlightEndpoint(b"t", [])
            return flight.FlightInfo(table.schema, descriptor, [ep], 1, -1)

        def do_get(self, context, ticket):
            return flight.RecordBatchStream(table)

    server = Tiny("grpc://127.0.0.1:0")
    conn.send(server.port)
    conn.poll(WORKER_IDLE_TIMEOUT * 4)  # until told to stop (bounded)
    server.shutdown()


class FloorServer:
    def __init__(self):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=floor_server_main, args=(child,), daemon=True)
        self.proc.start()
        if not self.conn.poll(60):
            raise RuntimeError("the pyarrow.flight floor server did not start")
        self.uri = f"grpc://127.0.0.1:{self.conn.recv()}"

    def stop(self):
        try:
            self.conn.send("stop")
        except Exception:
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()


class QuiverServer:
    LISTENING = re.compile(r"listening on (grpc(?:\+tls)?://[0-9.]+:\d+)")

    def __init__(self, binary, data, logpath, extra=()):
        self.logpath = logpath
        self.logfile = open(logpath, "w")
        command = [binary, "--data", str(data), "serve", "--bind", "127.0.0.1:0", *extra]
        self.process = subprocess.Popen(
            command, stdout=self.logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        self.url = None
        while time.monotonic() < deadline:
            text = Path(logpath).read_text(errors="replace")
            m = self.LISTENING.search(text)
            if m:
                self.url = m.group(1)
                break
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        if self.url is None:
            self.stop()
            raise RuntimeError(f"quiver serve did not start: {Path(logpath).read_text()[-2000:]}")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.logfile.close()


class System:
    name = "?"
    param_name = "ef"

    def __init__(self, args, ds, work):
        self.args, self.ds, self.work = args, ds, work
        self.setup_info = {}
        self.notes = []

    def series(self):
        """[(series name, client spec, swept)]"""
        raise NotImplementedError

    def filtered_series(self):
        """[(series name, client spec)] that search with a filter (the spec's `filter`)."""
        return [(name, spec) for name, spec, swept in self.series() if swept]

    def teardown(self):
        pass


class QuiverSystem(System):
    name = "quiver"

    def setup(self):
        import adbc_driver_flightsql.dbapi as flight_sql

        args, ds = self.args, self.ds
        binary = args.quiver_bin
        if not binary or not os.path.exists(binary):
            raise RuntimeError(f"quiver binary not found at {binary!r}: build it or set QUIVER_BIN")
        try:
            version = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except Exception as e:  # noqa: BLE001
            version = f"? ({e})"
        self.setup_info["version"] = version
        if "debug" in version:
            self.notes.append("a DEBUG build: its figures are not representative")
        data = self.work / "quiver-data"
        extra = ["--allow-server-files"] if args.quiver_load == "copy" else []
        self.server = QuiverServer(binary, data, self.work / "quiver-serve.log", extra)
        self.uri = self.server.url
        log(f"  quiver serving {self.uri} ({version})")
        table = arrow_table(ds)
        cookies = "false" if args.no_cookies else "true"
        with flight_sql.connect(self.uri, db_kwargs={COOKIE_OPTION: cookies}, autocommit=True) as conn:
            cur = conn.cursor()
            declared = "".join(f"{c.name} {c.quiver}, " for c in ds.columns())
            cur.execute(
                f"CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, {declared}embedding VECTOR({ds.dim}))"
            )
            t = time.perf_counter()
            if args.quiver_load == "copy":
                import pyarrow.parquet as pq

                path = self.work / "quiver-load.parquet"
                pq.write_table(table, path, row_group_size=batch_rows(ds.dim))
                self.setup_info["parquet_write_s"] = time.perf_counter() - t
                t = time.perf_counter()
                cur.execute(f"COPY docs FROM '{path}'")
                try:
                    cur.fetchall()
                except Exception:
                    pass
                self.setup_info["load"] = "COPY docs FROM '<parquet>'"
            else:
                cur.adbc_ingest("docs", table.to_reader(max_chunksize=batch_rows(ds.dim)), mode="append")
                self.setup_info["load"] = "ADBC adbc_ingest (Flight SQL bulk ingest, append)"
            self.setup_info["ingest_s"] = time.perf_counter() - t
            cur.execute("SELECT count(*) FROM docs")
            count = cur.fetchone()[0]
            if count != ds.rows:
                raise RuntimeError(f"quiver holds {count} rows after the load, expected {ds.rows}")
            t = time.perf_counter()
            cur.execute(
                "CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops) "
                f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
            )
            try:
                cur.fetchall()
            except Exception:
                pass
            self.setup_info["index_s"] = time.perf_counter() - t
            # The first search loads the index into memory.
            q = ds.queries[0]
            literal = vector_literal(q)
            t = time.perf_counter()
            cur.execute(f"SELECT id FROM docs ORDER BY l2_distance(embedding, {literal}) LIMIT 10")
            cur.fetchall()
            self.setup_info["first_search_s"] = time.perf_counter() - t
            try:
                cur.execute(
                    f"EXPLAIN ANALYZE SELECT id FROM docs ORDER BY l2_distance(embedding, {literal}) LIMIT 10"
                )
                plan = "\n".join(str(v) for row in cur.fetchall() for v in row)
                uses = "IndexKnnExec" in plan
                loaded = "loaded_index_searches=1" in plan
                self.setup_info["plan_uses_index"] = uses
                self.setup_info["plan_loaded_index"] = loaded
                if not uses:
                    self.notes.append("EXPLAIN ANALYZE shows no IndexKnnExec: the search is exact")
            except Exception as e:  # noqa: BLE001
                self.setup_info["plan_error"] = str(e)[:300]
            # How can a session setting be read back?
            check = {}
            for m, sql in (
                ("show", "SHOW quiver.ef"),
                ("current_setting", "SELECT current_setting('quiver.ef')"),
            ):
                try:
                    cur.execute(sql)
                    check[m] = str(cur.fetch_arrow_table().to_pylist())[:200]
                except Exception as e:  # noqa: BLE001
                    check[m] = f"error: {str(e).splitlines()[0][:200] if str(e) else type(e).__name__}"
            self.setup_info["setting_read_back"] = check
            works = [m for m, v in check.items() if not v.startswith("error")]
            self.check_method = works[0] if works else None
            # Does SET stick on one connection (cookie middleware on)?
            try:
                cur.execute("SET quiver.ef = 37")
                try:
                    cur.fetchall()
                except Exception:
                    pass
                observed, method, err = read_quiver_setting(cur, "quiver.ef", self.check_method)
                self.setup_info["set_probe"] = {"set": 37, "observed": observed, "method": method, "error": err}
                self.session_ok = observed is not None and observed.strip() == "37"
            except Exception as e:  # noqa: BLE001
                self.setup_info["set_probe"] = {"error": str(e)[:300]}
                self.session_ok = False
            cur.close()

    def client_spec(self, mode):
        return {
            "kind": "quiver",
            "uri": self.uri,
            "check_method": self.check_method,
            "cookies": not self.args.no_cookies,
            "mode": mode,
        }

    def series(self):
        out = [(f"quiver/{m}", self.client_spec(m), True) for m in self.args.quiver_modes]
        out.append(("quiver/select1", self.client_spec("select1"), False))
        out.append(
            ("quiver/select1-flight", {"kind": "floor", "uri": self.uri, "command": flight_sql_query("SELECT 1")}, False)
        )
        return out

    def filtered_series(self):
        return [("quiver/prepared", self.client_spec("prepared"))]

    def teardown(self):
        if getattr(self, "server", None):
            self.server.stop()


class PgvectorSystem(System):
    name = "pgvector"

    def setup(self):
        import pgserver
        import psycopg
        from pgvector.psycopg import register_vector

        ds, args = self.ds, self.args
        pgdata = self.work / "pgdata"
        srv = pgserver.get_server(pgdata, cleanup_mode="stop")
        # Restart once with a shared_buffers large enough for the table and index.
        with psycopg.connect(srv.get_uri(), autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET shared_buffers = '{args.pg_shared_buffers}'")
        srv.cleanup()
        self.srv = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.uri = self.srv.get_uri()
        with psycopg.connect(self.uri, autocommit=True) as conn:
            self.setup_info["version"] = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            self.setup_info["pgvector"] = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0]
            self.setup_info["shared_buffers"] = conn.execute("SHOW shared_buffers").fetchone()[0]
            register_vector(conn)
            columns = ds.columns()
            declared = "".join(f"{c.name} {c.pg}, " for c in columns)
            conn.execute(f"CREATE TABLE docs (id bigint PRIMARY KEY, {declared}embedding vector({ds.dim}))")
            t = time.perf_counter()
            values = [c.python() for c in columns]
            names = ", ".join(c.name for c in columns)
            with conn.cursor() as cur:
                with cur.copy(f"COPY docs (id, {names}, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                    copy.set_types(["int8", *(c.pg_copy for c in columns), "vector"])
                    for i in range(ds.rows):
                        copy.write_row((i, *(v[i] for v in values), ds.base[i]))
            self.setup_info["ingest_s"] = time.perf_counter() - t
            self.setup_info["load"] = "COPY ... FROM STDIN (FORMAT BINARY) through psycopg"
            conn.execute(f"SET maintenance_work_mem = '{args.pg_maintenance_work_mem}'")
            t = time.perf_counter()
            conn.execute(
                "CREATE INDEX ON docs USING hnsw (embedding vector_l2_ops) "
                f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
            )
            self.setup_info["index_s"] = time.perf_counter() - t
            for c in columns:
                conn.execute(f"CREATE INDEX ON docs ({c.name})")
            conn.execute("ANALYZE docs")
            knn_sql = PG_KNN_SQL.format(where="")
            plan = "\n".join(
                r[0] for r in conn.execute("EXPLAIN " + knn_sql, (ds.queries[0],)).fetchall()
            )
            self.setup_info["version"] += f", pgvector {self.setup_info['pgvector']}"
            self.session = []
            self.setup_info["plan_uses_index"] = "Index Scan" in plan
            if "Index Scan" not in plan:
                self.session = ["SET enable_seqscan = off"]
                self.notes.append("the planner chose a sequential scan; clients run with enable_seqscan = off")
            t = time.perf_counter()
            conn.execute(knn_sql, (ds.queries[0],)).fetchall()
            self.setup_info["first_search_s"] = time.perf_counter() - t
            # Filtered searches iterate the index scan until enough rows pass, where pgvector
            # has iterative scans (0.8 and later).
            self.filtered_session = list(self.session)
            version = tuple(int(x) for x in re.findall(r"\d+", self.setup_info["pgvector"])[:2])
            if version >= (0, 8):
                self.filtered_session.append("SET hnsw.iterative_scan = relaxed_order")
                self.notes.append("filtered searches with hnsw.iterative_scan = relaxed_order")
            else:
                self.notes.append("no hnsw.iterative_scan before pgvector 0.8: a filter applies after the index scan")

    def series(self):
        return [("pgvector", {"kind": "pgvector", "uri": self.uri, "session": self.session}, True)]

    def filtered_series(self):
        return [("pgvector", {"kind": "pgvector", "uri": self.uri, "session": self.filtered_session})]

    def teardown(self):
        if getattr(self, "srv", None):
            self.srv.cleanup()


def milvus_host_main(db_path, conn):
    """Hosts Milvus Lite: opening the .db starts its gRPC server on a thread of this process."""
    try:
        from milvus_lite.server_manager import server_manager_instance

        uri = server_manager_instance.start_and_get_uri(db_path)
        if uri is None:
            raise RuntimeError("Milvus Lite did not start")
        conn.send(("ok", uri))
    except Exception:  # noqa: BLE001
        conn.send(("error", traceback.format_exc()))
        return
    conn.poll(WORKER_IDLE_TIMEOUT * 4)
    server_manager_instance.release_all()


class MilvusSystem(System):
    name = "milvus"

    def setup(self):
        from pymilvus import DataType, MilvusClient

        ds = self.ds
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=milvus_host_main, args=(str(self.work / "milvus.db"), child), daemon=True
        )
        self.proc.start()
        if not self.conn.poll(120):
            raise RuntimeError("Milvus Lite host did not start in 120 s")
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(value)
        self.uri = value
        try:
            import milvus_lite

            self.setup_info["version"] = f"milvus-lite {milvus_lite.__version__}"
        except Exception:
            pass
        client = MilvusClient(uri=self.uri)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        columns = ds.columns()
        for c in columns:
            kind, kwargs = c.milvus
            schema.add_field(c.name, getattr(DataType, kind), **kwargs)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=ds.dim)
        client.create_collection("docs", schema=schema)
        t = time.perf_counter()
        step = min(10000, batch_rows(ds.dim))
        values = {c.name: [c.milvus_null if v is None else v for v in c.python()] for c in columns}
        for s in range(0, ds.rows, step):
            chunk = ds.base[s : s + step]
            client.insert(
                "docs",
                [
                    {"id": s + i, **{n: v[s + i] for n, v in values.items()}, "embedding": e}
                    for i, e in enumerate(chunk.tolist())
                ],
            )
        client.flush("docs")
        self.setup_info["ingest_s"] = time.perf_counter() - t
        self.setup_info["load"] = f"MilvusClient.insert in batches of {step} rows, then flush"
        params = client.prepare_index_params()
        params.add_index(
            field_name="embedding",
            index_type="HNSW",
            metric_type="L2",
            params={"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION},
        )
        t = time.perf_counter()
        client.create_index("docs", params)
        client.load_collection("docs")
        self.setup_info["index_s"] = time.perf_counter() - t
        t = time.perf_counter()
        client.search(
            "docs", data=[ds.queries[0].tolist()], anns_field="embedding", limit=K,
            search_params={"metric_type": "L2", "params": {"ef": 64}}, output_fields=["id"],
        )
        self.setup_info["first_search_s"] = time.perf_counter() - t
        client.close()
        self.notes.append(
            "Milvus Lite's server runs on a thread of its host process; clients connect to its loopback URI"
        )

    def series(self):
        return [("milvus", {"kind": "milvus", "uri": self.uri}, True)]

    def teardown(self):
        if getattr(self, "proc", None):
            try:
                self.conn.send("stop")
            except Exception:
                pass
            self.proc.join(timeout=30)
            if self.proc.is_alive():
                self.proc.terminate()


class LancedbSystem(System):
    name = "lancedb"

    def setup(self):
        import lancedb

        ds = self.ds
        self.path = str(self.work / "lancedb")
        try:
            self.setup_info["version"] = f"lancedb {lancedb.__version__}"
        except Exception:
            pass
        db = lancedb.connect(self.path)
        table = arrow_table(ds)
        t = time.perf_counter()
        tbl = db.create_table("docs", data=table)
        self.setup_info["ingest_s"] = time.perf_counter() - t
        self.setup_info["load"] = "create_table from an Arrow table"
        t = time.perf_counter()
        with warnings.catch_warnings():  # this form of create_index is deprecated, but works
            warnings.simplefilter("ignore", DeprecationWarning)
            tbl.create_index(
                metric="l2",
                num_partitions=1,
                index_type="IVF_HNSW_SQ",
                m=HNSW_M,
                ef_construction=HNSW_EF_CONSTRUCTION,
                vector_column_name="embedding",
            )
        for c in ds.columns():
            tbl.create_scalar_index(c.name, index_type="BTREE")
        self.setup_info["index_s"] = time.perf_counter() - t
        self.notes.append("IVF_HNSW_SQ with one partition (as Quiver's hnsw), so nprobes has no effect; ef swept")
        t = time.perf_counter()
        tbl.search(ds.queries[0], vector_column_name="embedding").limit(K).select(["id", "_distance"]).to_arrow()
        self.setup_info["first_search_s"] = time.perf_counter() - t

    def series(self):
        return [("lancedb", {"kind": "lancedb", "path": self.path}, True)]


class HnswlibSystem(System):
    name = "hnswlib"

    def setup(self):
        import hnswlib

        ds = self.ds
        threads = os.cpu_count() or 1
        index = hnswlib.Index(space="l2", dim=ds.dim)
        t = time.perf_counter()
        index.init_index(max_elements=ds.rows, M=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, random_seed=100)
        index.add_items(ds.base, np.arange(ds.rows), num_threads=threads)
        self.setup_info["index_s"] = time.perf_counter() - t
        self.setup_info["ingest_s"] = 0.0
        self.setup_info["load"] = f"in memory; build (add_items) on {threads} threads"
        self.path = str(self.work / "hnswlib.bin")
        index.save_index(self.path)
        self.notes.append("each client process loads the saved index and searches on one thread")

    def series(self):
        return [("hnswlib", {"kind": "hnswlib", "path": self.path, "rows": self.ds.rows}, True)]


SYSTEMS = {
    "quiver": QuiverSystem,
    "pgvector": PgvectorSystem,
    "milvus": MilvusSystem,
    "lancedb": LancedbSystem,
    "hnswlib": HnswlibSystem,
}


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt(v, spec=".2f", none="-"):
    if v is None:
        return none
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return none
    return format(v, spec)


def cheapest(points, series, clients, target=0.95):
    """The cheapest (smallest parameter) point of a series that reaches the recall target; for
    series without recall (select1, floor), their one point."""
    pts = [p for p in points if p["series"] == series and p["clients"] == clients and "error" not in p]
    if not pts:
        return None
    if all(p.get("recall") is None for p in pts):
        return pts[0]
    ok = [p for p in pts if p.get("recall") is not None and p["recall"] >= target]
    if not ok:
        return None
    return min(ok, key=lambda p: (p["param"] if p["param"] is not None else 0))


def target_checks(points, clients_list):
    checks = []

    def desc(p, series=None, clients=None):
        if p is None:
            measured = any(
                q["series"] == series and q["clients"] == clients and "error" not in q for q in points
            )
            return "recall@10 >= 0.95 not reached" if measured else "not measured (failed or not run)"
        par = "" if p["param"] is None else f" at ef {p['param']}"
        rec = "" if p.get("recall") is None else f", recall {p['recall']:.3f}"
        stuck = " (the setting did not stick)" if p.get("param_applied") is False else ""
        return f"p50 {fmt(p['p50_ms'])} ms, {fmt(p['qps'], '.0f')} QPS{par}{stuck}{rec}"

    def add(name, ok, detail):
        checks.append({"target": name, "met": ok, "detail": detail})

    c1 = 1 if 1 in clients_list else min(clients_list)
    cn = 4 if 4 in clients_list else max(clients_list)
    qp = cheapest(points, "quiver/prepared", c1)
    pg = cheapest(points, "pgvector", c1)
    s1 = cheapest(points, "quiver/select1", c1)
    s1f = cheapest(points, "quiver/select1-flight", c1)
    fl = cheapest(points, "flight-floor", c1)
    ok = None if (qp is None or pg is None) else qp["p50_ms"] < pg["p50_ms"]
    add("Quiver prepared p50 < pgvector p50 (1 client, recall@10 >= 0.95)", ok,
        f"Quiver prepared: {desc(qp, 'quiver/prepared', c1)}; pgvector: {desc(pg, 'pgvector', c1)}")
    ok = None if (qp is None or s1 is None) else qp["p50_ms"] <= 1.5 * s1["p50_ms"]
    ratio = "" if ok is None else f" (ratio {qp['p50_ms'] / s1['p50_ms']:.2f}x)"
    add("Quiver prepared k-NN p50 within 1.5x of Quiver prepared SELECT 1 p50", ok,
        f"k-NN: {desc(qp, 'quiver/prepared', c1)}; SELECT 1: {desc(s1, 'quiver/select1', c1)}{ratio}")
    ok = None if (s1 is None or fl is None) else s1["p50_ms"] <= 1.5 * fl["p50_ms"]
    ratio = "" if ok is None else f" (ratio {s1['p50_ms'] / fl['p50_ms']:.2f}x)"
    add("Quiver prepared SELECT 1 p50 within 1.5x of a bare Flight round trip", ok,
        f"SELECT 1: {desc(s1, 'quiver/select1', c1)}; bare Flight GetFlightInfo + DoGet: {desc(fl, 'flight-floor', c1)}{ratio}")
    ok = None if (s1f is None or fl is None) else s1f["p50_ms"] <= 1.5 * fl["p50_ms"]
    ratio = "" if ok is None else f" (ratio {s1f['p50_ms'] / fl['p50_ms']:.2f}x)"
    add("Quiver SELECT 1 p50 within 1.5x of a bare Flight round trip, both from the pyarrow.flight client", ok,
        f"SELECT 1: {desc(s1f, 'quiver/select1-flight', c1)}; bare Flight: {desc(fl, 'flight-floor', c1)}{ratio}")
    qp4 = cheapest(points, "quiver/prepared", cn)
    pg4 = cheapest(points, "pgvector", cn)
    ok = None if (qp4 is None or pg4 is None) else qp4["qps"] > pg4["qps"]
    add(f"Quiver {cn}-client QPS > pgvector {cn}-client QPS (recall@10 >= 0.95)", ok,
        f"Quiver prepared: {desc(qp4, 'quiver/prepared', cn)}; pgvector: {desc(pg4, 'pgvector', cn)}")
    return checks


def filtered_name(series: str, filt: Filter) -> str:
    return f"{series} where {filt.label}"


def filter_checks(points, filters, clients_list):
    """The filtered-search targets: recall@10 >= 0.95 under every filter, QPS under filters
    admitting 10% of the rows or more at least half of Quiver's unfiltered QPS, and more QPS
    than every peer at that recall."""
    checks = []
    if not filters:
        return checks
    c1 = 1 if 1 in clients_list else min(clients_list)
    unfiltered = cheapest(points, "quiver/prepared", c1)
    peers = sorted({p["series"].split(" where ")[0] for p in points if " where " in p["series"]} - {"quiver/prepared"})
    for filt in filters:
        q = cheapest(points, filtered_name("quiver/prepared", filt), c1)
        label = filt.label if filt.label.endswith("%") else f"{filt.label}: {filt.selectivity * 100:.2g}%"
        detail = "recall@10 >= 0.95 not reached" if q is None else (
            f"p50 {fmt(q['p50_ms'])} ms, {fmt(q['qps'], '.0f')} QPS at ef {q['param']}, recall {q['recall']:.3f}"
        )
        checks.append({"target": f"Quiver filtered ({label}) reaches recall@10 >= 0.95", "met": q is not None, "detail": detail})
        if filt.selectivity >= 0.1 - 1e-9:
            ok = None if (q is None or unfiltered is None) else q["qps"] >= 0.5 * unfiltered["qps"]
            base = "-" if unfiltered is None else f"{fmt(unfiltered['qps'], '.0f')} QPS unfiltered"
            checks.append({"target": f"Quiver filtered ({label}) QPS >= 0.5x its unfiltered QPS", "met": ok,
                           "detail": f"{detail}; {base}"})
        for peer in peers:
            other = cheapest(points, filtered_name(peer, filt), c1)
            ok = None if q is None else (other is None or q["qps"] > other["qps"])
            theirs = "recall@10 >= 0.95 not reached" if other is None else (
                f"{fmt(other['qps'], '.0f')} QPS at ef {other['param']}, recall {other['recall']:.3f}"
            )
            checks.append({"target": f"Quiver filtered ({label}) QPS > {peer} at recall@10 >= 0.95", "met": ok,
                           "detail": f"Quiver: {detail}; {peer}: {theirs}"})
    return checks


def measure_optimize(spec, series, ds, appended, ds_ctx, args, results):
    """After the append stream: one client of `spec` keeps querying at `--append-ef` while the
    system's own index optimisation runs, then runs the queries once more; appends a point with
    the latency during and after it to results."""
    log(f"  {series}: 1 client, queries while the index is optimised")

    def run(group, point):
        target = spec.get("uri") or spec.get("path")
        [run] = group.command(
            "optimize",
            (min(args.warmup, ds_ctx["nq"]), args.max_seconds, target),
            args.max_seconds + 3600,
            "optimize",
        )
        if run["optimize_error"]:
            raise RuntimeError(run["optimize_error"])
        point["optimize_s"] = run["optimize_s"]
        for phase, flag in (("during", True), ("after", False)):
            lat = np.asarray([x for x, d in zip(run["lat"], run["during"]) if d == flag])
            point[f"{phase}_n"] = int(lat.size)
            point[f"{phase}_p50_ms"] = float(np.percentile(lat, 50) * 1e3) if lat.size else None
            point[f"{phase}_p99_ms"] = float(np.percentile(lat, 99) * 1e3) if lat.size else None
        run["appended"] = [len(appended)] * len(run["lat"])
        point.update(summarize([run], ds_ctx["gt"]))
        point["recall"] = stream_recall(ds, appended, [run])
        point["p50_ms"], point["p99_ms"] = point["during_p50_ms"], point["during_p99_ms"]
        log(f"    optimize {point['optimize_s']:.1f} s; during: n={point['during_n']} "
            f"p50={fmt(point['during_p50_ms'])} ms p99={fmt(point['during_p99_ms'])} ms; after: "
            f"p50={fmt(point['after_p50_ms'])} ms p99={fmt(point['after_p99_ms'])} ms; recall={point['recall']:.3f}")

    one_client_point(spec, series, ds_ctx, args, results, {"appended_rows": len(appended)}, run)


def optimize_checks(points, ef):
    """The index maintenance target: Quiver's searches go on while its index is optimised
    (p99 during within 2x of the frozen collection's, as for appends: the build shares the
    cores), and after it run as on the frozen collection."""
    run = [p for p in points if p["series"] == "quiver/prepared +optimize" and "error" not in p]
    frozen = [p for p in points if p["series"] == "quiver/prepared" and p["clients"] == 1 and p["param"] == ef
              and "error" not in p]
    if not run:
        return []
    o, f = run[0], (frozen[0] if frozen else None)
    detail = (f"OPTIMIZE {fmt(o['optimize_s'])} s; during it: p50 {fmt(o['during_p50_ms'])} ms, p99 "
              f"{fmt(o['during_p99_ms'])} ms ({o['during_n']} queries); after: p50 {fmt(o['after_p50_ms'])} ms, "
              f"p99 {fmt(o['after_p99_ms'])} ms; recall {fmt(o['recall'], '.3f')}"
              + ("" if f is None else f"; frozen: p50 {fmt(f['p50_ms'])} ms, p99 {fmt(f['p99_ms'])} ms"))
    ok = None if f is None or o["during_p99_ms"] is None else o["during_p99_ms"] <= 2 * f["p99_ms"]
    return [{"target": f"Quiver p99 while its index is optimised within 2x of the frozen collection's (ef {ef})",
             "met": ok, "detail": detail}]


def append_checks(points, ef):
    """The append-stream targets: Quiver's p99 while rows are written within 2x of its p99 on
    the frozen collection at the same ef, and its recall as high."""
    stream = [p for p in points if p["series"] == "quiver/prepared +appends" and "error" not in p]
    frozen = [p for p in points if p["series"] == "quiver/prepared" and p["clients"] == 1 and p["param"] == ef
              and "error" not in p]
    if not stream:
        return []
    s, f = stream[0], (frozen[0] if frozen else None)
    detail = (f"with appends: p50 {fmt(s['p50_ms'])} ms, p99 {fmt(s['p99_ms'])} ms, recall {fmt(s['recall'], '.3f')}"
              + ("" if f is None else f"; frozen: p50 {fmt(f['p50_ms'])} ms, p99 {fmt(f['p99_ms'])} ms, "
                 f"recall {fmt(f['recall'], '.3f')}"))
    ok = None if f is None else s["p99_ms"] <= 2 * f["p99_ms"]
    okr = None if f is None else s["recall"] >= f["recall"] - 0.01
    return [
        {"target": f"Quiver p99 while rows are appended within 2x of the frozen collection's (ef {ef})", "met": ok, "detail": detail},
        {"target": "Quiver recall while rows are appended within 0.01 of the frozen collection's", "met": okr, "detail": detail},
    ]


def render_markdown(report):
    lines = []
    cfg = report["config"]
    lines.append(f"# Quiver end-to-end benchmark ({report['started']})")
    lines.append("")
    lines.append(
        f"k = {K}, L2; HNSW M = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION} everywhere; "
        f"clients: {', '.join(map(str, cfg['clients']))} (separate processes); machine: "
        f"{report['machine']}"
    )
    lines.append("")
    if report["warnings"]:
        lines.append("## Warnings")
        lines.append("")
        seen = set()
        for w in report["warnings"]:
            if w not in seen:
                seen.add(w)
                lines.append(f"- **WARNING**: {w}")
        lines.append("")
    for dname, d in report["datasets"].items():
        lines.append(f"## Data set `{dname}`: {d['rows']} x {d['dim']}, {d['queries']} queries")
        lines.append("")
        lines.append(f"Ground truth: {d['gt_source']}.")
        lines.append("")
        lines.append("| system | status | load | ingest s | index build s | first search s | notes |")
        lines.append("|---|---|---|---|---|---|---|")
        for sname, s in d["systems"].items():
            info = s.get("setup", {})
            status = "ok" if s["status"] == "ok" else f"FAILED: {s.get('error', '')[:300]}".replace("\n", " ").replace("|", "/")
            notes = "; ".join(s.get("notes", []))
            ver = info.get("version")
            if ver:
                notes = f"{ver}; {notes}" if notes else ver
            lines.append(
                f"| {sname} | {status} | {info.get('load', '-')} | {fmt(info.get('ingest_s'))} | "
                f"{fmt(info.get('index_s'))} | {fmt(info.get('first_search_s'), '.3f')} | {notes.replace('|', '/')} |"
            )
        lines.append("")
        lines.append("| series | clients | ef | recall@10 | QPS | p50 ms | p99 ms | queries | note |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for p in d["points"]:
            note = []
            if "error" in p:
                note.append("FAILED: " + p["error"].splitlines()[-1][:200].replace("|", "/") if p["error"] else "FAILED")
            if p.get("truncated"):
                note.append("stopped at --max-seconds")
            if p.get("param_applied") is False or (p.get("param") is not None and p.get("param_applied") is None and p["series"].startswith("quiver")):
                note.append("setting did not stick")
            if p.get("optimize_s") is not None:
                note.append(f"latency while optimising ({p['during_n']} queries, {fmt(p['optimize_s'], '.1f')} s); "
                            f"after it: p50 {fmt(p['after_p50_ms'], '.3f')} ms, p99 {fmt(p['after_p99_ms'], '.3f')} ms")
            lines.append(
                f"| {p['series']} | {p['clients']} | {'-' if p.get('param') is None else p['param']} | "
                f"{fmt(p.get('recall'), '.3f')} | {fmt(p.get('qps'), '.1f')} | {fmt(p.get('p50_ms'), '.3f')} | "
                f"{fmt(p.get('p99_ms'), '.3f')} | {p.get('n', '-')} | {'; '.join(note)} |"
            )
        lines.append("")
        lines.append("### Targets (each system at its cheapest setting with recall@10 >= 0.95)")
        lines.append("")
        for c in d["targets"]:
            verdict = {True: "met", False: "NOT met", None: "not measured"}[c["met"]]
            lines.append(f"- {c['target']}: **{verdict}** — {c['detail']}")
        lines.append("")
    return "\n".join(lines)


def plot(report, outdir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for dname, d in report["datasets"].items():
        fig, ax = plt.subplots(figsize=(12, 6))
        series = sorted({p["series"] for p in d["points"]})
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        drew = False
        for si, s in enumerate(series):
            colour = colours[si % len(colours)]
            for clients in sorted({p["clients"] for p in d["points"]}):
                pts = [p for p in d["points"] if p["series"] == s and p["clients"] == clients and p.get("qps")]
                if not pts:
                    continue
                style = "-" if clients == 1 else "--"
                marker = "o" if clients == 1 else "s"
                if all(p.get("recall") is None for p in pts):
                    ax.axhline(pts[0]["qps"], color=colour, linestyle=":" if clients == 1 else "-.",
                               linewidth=1, label=f"{s}, {clients} client(s) (no search)")
                else:
                    pts = sorted(pts, key=lambda p: p["param"])
                    ax.plot([p["recall"] for p in pts], [p["qps"] for p in pts], style, marker=marker,
                            color=colour, label=f"{s}, {clients} client(s)")
                drew = True
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries per second")
        ax.set_yscale("log")
        ax.axvline(0.95, color="grey", linewidth=0.5)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"{dname}: {d['rows']} x {d['dim']}, k = {K} (solid: 1 client, dashed: 4)")
        if drew:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        path = outdir / f"recall_qps_{dname}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        files.append(str(path))
    return files


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def csv_ints(s):
    return [int(x) for x in s.split(",") if x.strip()]


def csv_floats(s):
    return [float(x) for x in s.split(",") if x.strip()]


def csv_strs(s):
    return [x.strip() for x in s.split(",") if x.strip()]


def parse_args(argv=None):
    here = Path(__file__).resolve().parent
    default_bin = os.environ.get("QUIVER_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/quiver-target")), "release", "quiver"
    )
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None, help="output directory (default ./e2e-results/<time>)")
    p.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one, removed)")
    p.add_argument("--keep-work", action="store_true", help="keep the working directory")
    p.add_argument("--datasets", type=csv_strs, default=["minilm", "synthetic"], help="comma-separated: minilm, pkg, synthetic")
    p.add_argument("--minilm-dir", type=Path, default=Path(os.environ.get("QUIVER_MINILM", here.parents[2] / "shared/data/minilm-50k")))
    p.add_argument("--minilm-rows", type=int, default=50000, help="first rows of minilm-50k used (fewer: brute-force ground truth)")
    p.add_argument("--minilm-queries", type=int, default=500, help="first queries used")
    p.add_argument("--pkg-dir", type=Path, default=Path(os.environ.get("QUIVER_PKG_TEXT", here.parents[2] / "shared/data/pkg-text-50k")))
    p.add_argument("--pkg-queries", type=int, default=500, help="first queries of pkg-text-50k used")
    p.add_argument("--synthetic-rows", type=int, default=1_000_000, help="rows of the clustered Gaussian data")
    p.add_argument("--synthetic-queries", type=int, default=1000, help="its queries (exact ground truth by brute force)")
    p.add_argument("--synthetic-dim", type=int, default=128)
    p.add_argument("--synthetic-clusters", type=int, default=1000, help="capped at rows / 100")
    p.add_argument("--seed", type=int, default=42, help="seed of the synthetic data")
    p.add_argument("--cache-dir", type=Path, default=Path(os.path.expanduser("~/.cache/quiver-e2e-data")),
                   help="where generated synthetic data and its ground truth are kept ('' for none)")
    p.add_argument("--ef", type=csv_ints, default=[10, 16, 32, 64, 128, 256, 512], help="search breadths swept (each system's ef / ef_search)")
    p.add_argument("--clients", type=csv_ints, default=[1, 4], help="numbers of concurrent client processes")
    p.add_argument("--systems", type=csv_strs, default=["quiver", "pgvector", "milvus", "lancedb", "hnswlib"], help="systems to run (quiver includes its prepared SELECT 1)")
    p.add_argument("--quiver-modes", type=csv_strs, default=["prepared", "literal", "literal-direct"], help="Quiver's k-NN query paths")
    p.add_argument("--quiver-bin", default=default_bin, help="the quiver binary (default $QUIVER_BIN, else the release build)")
    p.add_argument("--quiver-load", choices=["ingest", "copy"], default="ingest", help="bulk ingest over ADBC, or COPY FROM a Parquet file")
    p.add_argument("--no-cookies", action="store_true",
                   help="open Quiver's ADBC connections without the cookie middleware (no sessions)")
    p.add_argument("--no-floor", action="store_true", help="skip the bare pyarrow.flight round trip")
    p.add_argument("--selectivities", type=csv_floats, default=[0.5, 0.1, 0.01, 0.001],
                   help="fractions of the rows a filtered search admits ('' for no filtered search)")
    p.add_argument("--filter-ef", type=csv_ints, default=[16, 64, 256], help="search breadths of the filtered searches")
    p.add_argument("--filter-clients", type=csv_ints, default=[1], help="concurrent clients of the filtered searches")
    p.add_argument("--appends", type=float, default=0.01,
                   help="fraction of the rows written as new rows between the queries of the append stream (0: none)")
    p.add_argument("--append-batch", type=int, default=5, help="rows a write of the append stream holds")
    p.add_argument("--append-ef", type=int, default=64, help="search breadth of the append stream")
    p.add_argument("--warmup", type=int, default=20, help="untimed queries per client before each point")
    p.add_argument("--max-seconds", type=float, default=60.0, help="time cap of one point's timed pass")
    p.add_argument("--pg-shared-buffers", default="2GB")
    p.add_argument("--pg-maintenance-work-mem", default="2GB")
    args = p.parse_args(argv)
    unknown = [s for s in args.systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    bad = [m for m in args.quiver_modes if m not in ("prepared", "literal", "literal-direct")]
    if bad:
        p.error(f"unknown quiver modes {bad}")
    if any(not 0 < f <= 1 for f in args.selectivities):
        p.error("every selectivity must be in (0, 1]")
    if any(e < K for e in args.ef + args.filter_ef):
        p.error(f"every ef must be at least k = {K}")
    if str(args.cache_dir) in ("", "."):
        args.cache_dir = None
    return args


def run_dataset(args, ds, root, floor, report):
    dwork = root / ds.name
    dwork.mkdir(parents=True, exist_ok=True)
    queries_path = dwork / "queries.npy"
    np.save(queries_path, ds.queries)
    d = {
        "rows": ds.rows,
        "dim": ds.dim,
        "queries": int(len(ds.queries)),
        "gt_source": ds.source,
        "systems": {},
        "points": [],
    }
    report["datasets"][ds.name] = d
    appended = appended_rows(ds, args.appends) if args.appends > 0 and ds.appendable else None
    appends_path = dwork / "appended.npy"
    if appended is not None:
        np.save(appends_path, appended)
    ctx = {"name": ds.name, "nq": len(ds.queries), "queries_path": queries_path, "gt": ds.gt,
           "appends_path": appends_path}
    warnings = report["warnings"]
    filters = ds.filters(args.selectivities)
    filtered = []
    for i, filt in enumerate(filters):
        t = time.perf_counter()
        mask_path = dwork / f"filter{i}.npy"
        np.save(mask_path, filt.mask)
        spec = {"sql": filt.sql, "milvus": filt.milvus, "mask_path": str(mask_path)}
        filtered.append((filt, spec, filtered_gt(ds, filt.mask)))
        log(f"{ds.name}: exact ground truth of {filt.sql} ({filt.selectivity * 100:.3g}% of the rows) "
            f"in {time.perf_counter() - t:.1f} s")
    d["filters"] = [{"label": f.label, "sql": f.sql, "selectivity": f.selectivity} for f in filters]
    if floor is not None:
        for c in args.clients:
            measure({"kind": "floor", "uri": floor.uri}, "flight-floor", c, [None], ctx, args, d["points"], warnings)
    for sname in args.systems:
        log(f"{ds.name}: {sname}: set-up")
        swork = dwork / sname
        swork.mkdir(parents=True, exist_ok=True)
        system = SYSTEMS[sname](args, ds, swork)
        entry = {"status": "ok", "setup": system.setup_info, "notes": system.notes}
        d["systems"][sname] = entry
        try:
            system.setup()
            log(f"  set-up: {json.dumps({k: v for k, v in system.setup_info.items() if k.endswith('_s')})}")
            if sname == "quiver":
                if not getattr(system, "session_ok", False):
                    warnings.append(
                        f"{ds.name}: `SET quiver.ef` did not stick over ADBC Flight SQL (cookie middleware "
                        f"{'off' if args.no_cookies else 'on'}): "
                        f"probe {system.setup_info.get('set_probe')}; read-back: "
                        f"{system.setup_info.get('setting_read_back')}. Quiver's ef sweep points then all "
                        f"run at the server's default ef (100)."
                    )
            for series, spec, swept in system.series():
                for c in args.clients:
                    measure(spec, series, c, args.ef if swept else [None], ctx, args, d["points"], warnings)
            for filt, filter_spec, gt in filtered:
                fctx = {**ctx, "gt": gt}
                spec_filter = {"filter": filter_spec, "rows": ds.rows}
                for series, spec in system.filtered_series():
                    name = filtered_name(series, filt)
                    for c in args.filter_clients:
                        measure({**spec, **spec_filter}, name, c, args.filter_ef, fctx, args, d["points"], warnings)
            if appended is not None:
                # Last: the appends change the collection.
                for series, spec in system.filtered_series():
                    room = {"rows": ds.rows, "room": len(appended)}
                    measure_stream({**spec, **room}, f"{series} +appends", ds, appended, ctx, args, d["points"])
                    if hasattr(CLIENTS[spec["kind"]], "optimize"):
                        measure_optimize({**spec, **room}, f"{series} +optimize", ds, appended, ctx, args,
                                         d["points"])
        except Exception as e:  # noqa: BLE001
            entry["status"] = "failed"
            entry["error"] = f"{type(e).__name__}: {e}"[:3000]
            entry["traceback"] = traceback.format_exc()[-4000:]
            log(f"  {sname} FAILED: {entry['error'][:1000]}")
        finally:
            try:
                system.teardown()
            except Exception as e:  # noqa: BLE001
                log(f"  {sname} teardown: {e}")
            if not args.keep_work:
                shutil.rmtree(swork, ignore_errors=True)
    d["targets"] = (
        target_checks(d["points"], args.clients)
        + filter_checks(d["points"], filters, args.filter_clients)
        + append_checks(d["points"], args.append_ef)
        + optimize_checks(d["points"], args.append_ef)
    )


def main(argv=None):
    args = parse_args(argv)
    started = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    out = args.out or Path("e2e-results") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    root = args.work or Path(tempfile.mkdtemp(prefix="quiver-e2e-"))
    root.mkdir(parents=True, exist_ok=True)
    import platform

    report = {
        "started": started,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
        },
        "warnings": [],
        "datasets": {},
    }
    floor = None
    try:
        if not args.no_floor:
            try:
                floor = FloorServer()
            except Exception as e:  # noqa: BLE001
                report["warnings"].append(f"the bare Flight floor server failed: {e}")
        for name in args.datasets:
            log(f"data set {name}: loading")
            try:
                if name == "minilm":
                    ds = load_minilm(args.minilm_dir, args.minilm_rows, args.minilm_queries)
                elif name == "pkg":
                    ds = load_pkg(args.pkg_dir, args.pkg_queries)
                elif name == "synthetic":
                    ds = make_synthetic(
                        args.synthetic_rows, args.synthetic_queries, args.synthetic_dim,
                        args.synthetic_clusters, args.seed, args.cache_dir,
                    )
                else:
                    raise ValueError(f"unknown data set {name}")
            except Exception as e:  # noqa: BLE001
                report["warnings"].append(f"data set {name} failed to load: {e}")
                log(f"data set {name} FAILED: {e}")
                continue
            log(f"data set {name}: {ds.rows} x {ds.dim}, {len(ds.queries)} queries; ground truth: {ds.source}")
            run_dataset(args, ds, root, floor, report)
            (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    finally:
        if floor is not None:
            floor.stop()
        if not args.keep_work and args.work is None:
            shutil.rmtree(root, ignore_errors=True)
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    md = render_markdown(report)
    (out / "results.md").write_text(md + "\n")
    try:
        report["plots"] = plot(report, out)
    except Exception as e:  # noqa: BLE001
        log(f"plotting failed: {e}")
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    print(md)
    log(f"results in {out}")


if __name__ == "__main__":
    main()
