"""Bulk ingest (adbc_ingest) of Arrow tables with a vector column, and catalog metadata."""

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest

VECTOR = pa.list_(pa.float32(), 4)


def table(ids):
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "title": pa.array([f"doc {i}" for i in ids]),
            "embedding": pa.array([[float(i), 0.0, 0.0, 1.0] for i in ids], type=VECTOR),
        }
    )


def test_ingest_creates_appends_and_replaces(server):
    with flight_sql.connect(server.url) as conn, conn.cursor() as cur:
        assert cur.adbc_ingest("items", table([1, 2, 3]), mode="create") == 3
        assert cur.adbc_ingest("items", table([4]), mode="append") == 1
        cur.execute("SELECT count(*) FROM items")
        assert cur.fetchone() == (4,)
        cur.execute("DESCRIBE items")
        described = {row[0]: row[1] for row in cur.fetchall()}
        assert described["embedding"] == "VECTOR(4)"
        cur.execute("SELECT id FROM items ORDER BY l2_distance(embedding, [3.9, 0, 0, 1]) LIMIT 1")
        assert cur.fetchone() == (4,)

        assert cur.adbc_ingest("items", table([7, 8]), mode="replace") == 2
        cur.execute("SELECT id FROM items ORDER BY id")
        assert cur.fetchall() == [(7,), (8,)]

        with pytest.raises(Exception, match="already exists"):
            cur.adbc_ingest("items", table([9]), mode="create")
        assert cur.adbc_ingest("more", table([1]), mode="create_append") == 1


def test_a_bad_ingest_leaves_nothing_behind(server):
    bad = pa.table(
        {
            "id": pa.array([1], pa.int64()),
            "embedding": pa.array([[float("nan"), 0.0, 0.0, 0.0]], type=VECTOR),
        }
    )
    with flight_sql.connect(server.url) as conn, conn.cursor() as cur:
        with pytest.raises(Exception, match="non-finite"):
            cur.adbc_ingest("broken", bad, mode="create")
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = [
            t["table_name"]
            for c in objects
            for s in c["catalog_db_schemas"]
            for t in (s["db_schema_tables"] or [])
        ]
        assert "broken" not in tables


def test_get_objects_and_table_schema_describe_collections(server):
    with flight_sql.connect(server.url) as conn:
        with conn.cursor() as cur:
            cur.adbc_ingest("items", table([1]), mode="create")
            cur.execute("CREATE DATABASE lab")
            cur.execute("CREATE TABLE lab.notes (body VARCHAR)")

        objects = conn.adbc_get_objects(depth="columns").read_all().to_pylist()
        assert [c["catalog_name"] for c in objects] == ["quiver"]
        schemas = {s["db_schema_name"]: s for s in objects[0]["catalog_db_schemas"]}
        assert {"default", "lab", "quiver"} <= set(schemas)
        items = next(t for t in schemas["default"]["db_schema_tables"] if t["table_name"] == "items")
        assert items["table_type"] == "TABLE"
        assert [c["column_name"] for c in items["table_columns"]] == ["id", "title", "embedding"]
        system = {t["table_name"]: t["table_type"] for t in schemas["quiver"]["db_schema_tables"]}
        assert system["collections"] == "SYSTEM TABLE"

        schema = conn.adbc_get_table_schema("items")
        assert schema.names == ["id", "title", "embedding"]
        assert schema.field("embedding").type == VECTOR
        notes = conn.adbc_get_table_schema("notes", db_schema_filter="lab")
        assert notes.names == ["body"]
        assert set(conn.adbc_get_table_types()) == {"TABLE", "SYSTEM TABLE"}
        assert conn.adbc_get_info()["vendor_name"] == "Quiver"
