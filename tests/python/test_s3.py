"""A data root in an S3 bucket: the same statements as on a local disk, against an S3 API server
(moto's, on loopback), with the catalog and the Lance datasets configured by the same `AWS_*`
environment variables. Nothing is written to the local disk."""

import os
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import boto3
import pyarrow as pa
import pytest

from conftest import quiver_bin

BUCKET = "quiver-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """An S3 API server on a free loopback port, with one empty bucket; yields the `AWS_*`
    environment that points Quiver at it."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "quiver",
        "AWS_SECRET_ACCESS_KEY": "quiver-secret",
    }
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("the S3 API server (moto) did not start")
            time.sleep(0.2)
    yield env, client
    process.kill()
    process.wait()


@pytest.fixture
def root(s3_server, tmp_path, monkeypatch):
    """A fresh `s3://` data root; the test runs in an empty local directory."""
    env, client = s3_server
    monkeypatch.chdir(tmp_path)
    return f"s3://{BUCKET}/{uuid.uuid4().hex}", env, client


def sql(root, statement: str) -> subprocess.CompletedProcess:
    uri, env, _ = root
    return subprocess.run(
        [quiver_bin(), "--data", uri, "sql", statement],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def ok(root, statement: str) -> str:
    done = sql(root, statement)
    assert done.returncode == 0, f"{statement}: {done.stderr}"
    return done.stdout


def cells(table: str) -> list[list[str]]:
    """The data rows of an aligned table printed by `quiver sql`."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]


def keys(root) -> list[str]:
    uri, _, client = root
    prefix = uri.removeprefix(f"s3://{BUCKET}/") + "/"
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"][len(prefix):] for page in pages for o in page.get("Contents", [])]


def test_a_collection_lives_in_the_bucket_and_survives_the_process(root, tmp_path):
    ok(root, "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, embedding VECTOR(2))")
    ok(root, "INSERT INTO docs SELECT value, 'doc ' || value, make_array(value, 0) "
             "FROM generate_series(1, 300)")
    stored = keys(root)
    assert any(k.startswith("_catalog/log/") for k in stored), stored
    assert any(k.startswith("collections/") and k.endswith(".lance") for k in stored), stored
    assert list(tmp_path.iterdir()) == [], "nothing is written to the local disk"

    # Another process reads what this one wrote, with the k-NN rewrite and an index.
    ok(root, "CREATE INDEX e ON docs USING IVF_FLAT (embedding) WITH (num_partitions = 4)")
    nearest = ok(root, "SELECT id FROM docs ORDER BY embedding <-> [41.2, 0] LIMIT 2")
    assert cells(nearest) == [["41"], ["42"]]
    assert cells(ok(root, "SHOW INDEXES ON docs"))[0][:3] == ["default.docs", "e", "embedding"]

    # A failed write changes nothing.
    bad = sql(root, "INSERT INTO docs VALUES (7, 'again', [0, 0])")
    assert bad.returncode == 1 and "duplicate" in bad.stderr.lower(), bad.stderr
    assert cells(ok(root, "SELECT count(*), max(title) FROM docs WHERE id = 7")) == [["1", "doc 7"]]
    ok(root, "DELETE FROM docs WHERE id > 100")
    ok(root, "UPDATE docs SET title = 'first' WHERE id = 1")
    assert cells(ok(root, "SELECT count(*) FROM docs")) == [["100"]]
    assert cells(ok(root, "SELECT title FROM docs WHERE id = 1")) == [["first"]]

    ok(root, "DROP TABLE docs")
    assert not [k for k in keys(root) if k.startswith("collections/")]


def test_snapshots_restores_and_garbage_collection_on_s3(root):
    ok(root, "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, embedding VECTOR(2))")
    ok(root, "INSERT INTO docs SELECT value, make_array(value, 1) FROM generate_series(1, 50)")
    ok(root, "CREATE SNAPSHOT nightly ON docs")
    assert any(k.endswith("manifest.avro") for k in keys(root))
    ok(root, "INSERT INTO docs SELECT value, make_array(value, 2) FROM generate_series(51, 80)")
    ok(root, "DELETE FROM docs WHERE id <= 10")

    ok(root, "RESTORE SNAPSHOT nightly ON docs TO copied")
    ok(root, "RESTORE SNAPSHOT nightly ON docs TO cloned WITH (mode = 'zero_copy')")
    jobs = cells(ok(root, "SELECT kind, state FROM quiver.jobs ORDER BY id"))
    assert jobs == [["RESTORE", "SUCCEEDED"], ["RESTORE", "SUCCEEDED"]]
    for table in ("copied", "cloned", '"docs@nightly"'):
        assert cells(ok(root, f"SELECT count(*), min(id), max(id) FROM {table}")) == [["50", "1", "50"]]
    assert cells(ok(root, "SELECT count(*), min(id) FROM docs")) == [["70", "11"]]

    # An orphan left by an interrupted write is collected; what snapshots and clones need is not.
    uri, _, client = root
    prefix = uri.removeprefix(f"s3://{BUCKET}/")
    collection_dir = next(k.split("/")[1] for k in keys(root) if k.startswith("collections/"))
    orphan = f"{prefix}/collections/{collection_dir}/data/orphan.lance"
    client.put_object(Bucket=BUCKET, Key=orphan, Body=b"half-written")
    removed = {row[0]: row[1:] for row in cells(ok(root, "VACUUM WITH (retention_seconds = 0, grace_seconds = 0)"))}
    assert removed["unreferenced files"] == ["1", "12"], removed
    assert int(removed["expired versions"][0]) > 0, removed
    assert not any(k.endswith("orphan.lance") for k in keys(root))
    for table in ("copied", "cloned", '"docs@nightly"'):
        assert cells(ok(root, f"SELECT count(*) FROM {table}")) == [["50"]]
    ok(root, "RESTORE TABLE docs TO SNAPSHOT nightly")
    assert cells(ok(root, "SELECT count(*), max(id) FROM docs")) == [["50", "50"]]


def test_concurrent_processes_commit_to_one_bucket_without_losing_a_write(root):
    ok(root, "CREATE TABLE events (id BIGINT)")

    def writer(n: int) -> list[str]:
        errors = []
        for i in range(4):
            done = sql(root, f"CREATE TABLE t_{n}_{i} (id BIGINT); INSERT INTO events VALUES ({n * 10 + i})")
            if done.returncode != 0:
                errors.append(done.stderr)
        return errors

    with ThreadPoolExecutor(3) as pool:
        errors = [e for result in pool.map(writer, range(3)) for e in result]
    assert errors == []
    tables = {row[2] for row in cells(ok(root, "SHOW TABLES")) if row[1] == "default"}
    assert tables == {"events"} | {f"t_{n}_{i}" for n in range(3) for i in range(4)}
    assert cells(ok(root, "SELECT count(*), count(DISTINCT id) FROM events")) == [["12", "12"]]


def test_the_server_serves_an_s3_root_over_flight_sql(root, start_server):
    uri, env, _ = root
    server = start_server(env=env, data=uri)
    with flight_sql.connect(server.url) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE docs (id BIGINT NOT NULL, embedding VECTOR(3))")
            cur.adbc_ingest("docs", _rows(), mode="append")
            cur.execute("SELECT id FROM docs ORDER BY l2_distance(embedding, [3, 3, 3]) LIMIT 1")
            assert cur.fetch_arrow_table().column("id").to_pylist() == [3]
    assert server.stop() == 0
    # The embedded CLI sees the rows the server wrote.
    assert cells(ok(root, "SELECT count(*) FROM docs")) == [["5"]]


def _rows() -> pa.Table:
    vectors = pa.FixedSizeListArray.from_arrays(
        pa.array([float(i) for i in range(1, 6) for _ in range(3)], pa.float32()), 3
    )
    return pa.table({"id": pa.array(range(1, 6), pa.int64()), "embedding": vectors})
