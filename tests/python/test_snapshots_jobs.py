"""Snapshot and job actions through pyarrow.flight, named as Milvus users know them, and the
snapshot manifest read back with an independent Avro reader (fastavro)."""

import json
import time

import adbc_driver_flightsql.dbapi as flight_sql
import fastavro
import pyarrow as pa
import pyarrow.flight as flight
import pytest


def call(client, action: str, body: dict):
    results = list(client.do_action(flight.Action(action, json.dumps(body).encode())))
    assert len(results) == 1
    return json.loads(results[0].body.to_pybytes())


@pytest.fixture
def docs(server):
    with flight_sql.connect(server.url) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, embedding VECTOR(2))"
            )
            cur.execute(
                "INSERT INTO docs SELECT value, 'doc ' || value, make_array(value, 0) "
                "FROM generate_series(1, 100)"
            )
            cur.execute("DELETE FROM docs WHERE id > 90")
    return server


def query(server, sql: str) -> pa.Table:
    with flight_sql.connect(server.url) as conn:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetch_arrow_table()


def test_snapshot_lifecycle_through_actions(docs):
    client = flight.FlightClient(docs.url)
    actions = {a.type for a in client.list_actions()}
    assert {
        "CreateSnapshot",
        "DropSnapshot",
        "ListSnapshots",
        "DescribeSnapshot",
        "RestoreSnapshot",
        "GetRestoreSnapshotState",
        "ListRestoreSnapshotJobs",
        "GetJob",
        "CancelJob",
    } <= actions

    with flight_sql.connect(docs.url) as conn:
        with conn.cursor() as cur:
            cur.execute("ALTER TABLE docs SET TBLPROPERTIES ('owner' = 'search')")
            cur.execute("CREATE INDEX e ON docs USING IVF_FLAT (embedding) WITH (num_partitions = 2)")
    snapshot = call(client, "CreateSnapshot", {"collection": "docs", "name": "nightly", "comment": "c"})
    assert snapshot["name"] == "nightly"
    assert snapshot["state"] == "COMMITTED"
    assert snapshot["rows"] == 90
    listed = call(client, "ListSnapshots", {"collection": "docs"})["snapshots"]
    assert [s["name"] for s in listed] == ["nightly"]
    described = call(client, "DescribeSnapshot", {"collection": "default.docs", "name": "nightly"})
    assert described["primary_key"] == ["id"]
    assert [c["type"] for c in described["schema"]] == ["BIGINT", "VARCHAR", "VECTOR(2)"]
    assert described["manifest_path"].endswith("manifest.avro")
    assert described["properties"] == {"owner": "search"}
    assert [(i["name"], i["column"], i["metric"]) for i in described["indices"]] == [("e", "embedding", "l2")]

    # pyarrow has no exception type for ALREADY_EXISTS: it surfaces as ArrowException.
    with pytest.raises(pa.ArrowException, match="already exists error, with message: snapshot 'nightly'"):
        call(client, "CreateSnapshot", {"collection": "docs", "name": "nightly"})
    with pytest.raises(pa.ArrowInvalid, match="invalid snapshot name"):
        call(client, "CreateSnapshot", {"collection": "docs", "name": "  "})
    with pytest.raises(KeyError, match="does not exist"):
        call(client, "DescribeSnapshot", {"collection": "docs", "name": "nope"})
    with pytest.raises(pa.ArrowInvalid, match="invalid JSON body for action 'CreateSnapshot'"):
        call(client, "CreateSnapshot", {"collection": "docs"})

    assert call(client, "DropSnapshot", {"collection": "docs", "name": "nightly"}) == {"dropped": True}
    assert call(client, "DropSnapshot", {"collection": "docs", "name": "nightly", "if_exists": True}) == {
        "dropped": False
    }
    assert call(client, "ListSnapshots", {})["snapshots"] == []


def test_restore_through_actions_and_follow_the_job(docs):
    client = flight.FlightClient(docs.url)
    call(client, "CreateSnapshot", {"collection": "docs", "name": "nightly"})
    with flight_sql.connect(docs.url) as conn:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO docs VALUES (500, 'late', [5, 5])")
    job_id = call(
        client, "RestoreSnapshot", {"collection": "docs", "name": "nightly", "target": "docs_restored"}
    )["job_id"]
    deadline = time.time() + 60
    progress = []
    while True:
        state = call(client, "GetRestoreSnapshotState", {"job_id": job_id})
        progress.append(state["progress"])
        if state["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            break
        assert time.time() < deadline, state
        time.sleep(0.05)
    assert state["state"] == "SUCCEEDED", state
    assert state["progress"] == 100
    assert progress == sorted(progress), "progress never goes backwards"
    assert state["time_cost_ms"] is not None and state["start_time"]
    jobs = call(client, "ListRestoreSnapshotJobs", {"collection": "docs"})["jobs"]
    assert [j["job_id"] for j in jobs] == [job_id]
    assert call(client, "GetJob", {"job_id": job_id})["kind"] == "RESTORE"

    restored = query(docs, "SELECT id FROM docs_restored ORDER BY id").column("id").to_pylist()
    assert restored == list(range(1, 91))
    with pytest.raises(pa.ArrowInvalid, match="already finished"):
        call(client, "CancelJob", {"job_id": job_id})
    with pytest.raises(KeyError, match="job 999 does not exist"):
        call(client, "GetJob", {"job_id": 999})


def test_the_manifest_reads_with_fastavro(docs):
    client = flight.FlightClient(docs.url)
    snapshot = call(client, "CreateSnapshot", {"collection": "docs", "name": "nightly"})
    manifest = docs.data / snapshot["manifest_path"]
    with open(manifest, "rb") as f:
        reader = fastavro.reader(f)
        assert reader.metadata["quiver.format_version"] == "1.0"
        files = list(reader)
    assert len(files) == snapshot["files"]
    assert sum(f["size_bytes"] for f in files) == snapshot["bytes"]
    kinds = {f["kind"] for f in files}
    assert {"DATA", "DELETION", "VERSION_MANIFEST"} <= kinds
    for f in files:
        assert (docs.data / f["path"]).stat().st_size == f["size_bytes"]
    assert sum(f["row_count"] for f in files if f["kind"] == "DATA") == 100
    with open(manifest.parent / "metadata.avro", "rb") as f:
        (metadata,) = list(fastavro.reader(f))
    assert metadata["snapshot_name"] == "nightly"
    assert metadata["collection"] == "docs"
    assert metadata["rows"] == 90
    assert metadata["primary_key"] == ["id"]
    schema = pa.ipc.read_schema(pa.py_buffer(metadata["arrow_schema"]))
    assert schema.names == ["id", "title", "embedding"]
    assert schema.field("embedding").type == pa.list_(pa.field("item", pa.float32()), 2)
