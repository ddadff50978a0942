"""Queries and prepared statements through ADBC's Flight SQL driver."""

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest


@pytest.fixture
def conn(server):
    with flight_sql.connect(server.url) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, embedding VECTOR(4))"
            )
            cur.execute(
                "INSERT INTO docs VALUES (1, 'alpha', [1, 0, 0, 0]), (2, 'beta', [0, 1, 0, 0]), "
                "(3, 'gamma', [0, 0, 1, 0])"
            )
        yield conn


def test_queries_return_arrow_tables(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT id, title FROM docs ORDER BY id")
        table = cur.fetch_arrow_table()
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert table.column("title").to_pylist() == ["alpha", "beta", "gamma"]
    assert table.schema.field("id").type == pa.int64()


def test_vectors_come_back_as_fixed_size_lists(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT embedding FROM docs WHERE id = 2")
        table = cur.fetch_arrow_table()
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 4)
    assert table.column("embedding").to_pylist() == [[0.0, 1.0, 0.0, 0.0]]


def test_a_python_list_binds_as_a_vector_parameter(conn):
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, l2_distance(embedding, $1) AS d FROM docs ORDER BY d LIMIT 3",
            parameters=([0.0, 0.1, 0.9, 0.0],),
        )
        rows = cur.fetchall()
    assert [r[0] for r in rows] == [3, 2, 1]
    assert rows[0][1] == pytest.approx(((0.1) ** 2 + (0.1) ** 2) ** 0.5, rel=1e-5)


def test_a_fixed_size_list_binds_as_a_vector_parameter(conn):
    query = pa.array([[0.9, 0.0, 0.1, 0.0]], type=pa.list_(pa.float32(), 4))
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id FROM docs ORDER BY l2_distance(embedding, $1) LIMIT 1",
            parameters=pa.record_batch([query], names=["$1"]),
        )
        assert cur.fetchall() == [(1,)]


def test_prepared_statements_run_once_per_parameter_set(conn):
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO docs VALUES ($1, $2, $3)",
            [(10, "ten", [1.0, 1.0, 0.0, 0.0]), (11, "eleven", [0.0, 1.0, 1.0, 0.0])],
        )
        cur.execute("SELECT title FROM docs WHERE id = $1", parameters=(11,))
        assert cur.fetchall() == [("eleven",)]
        cur.execute("SELECT count(*) FROM docs")
        assert cur.fetchone() == (5,)
        # The prepared statement's schemas are known before it runs.
        cur.adbc_prepare("SELECT id, title FROM docs WHERE id = $1")
        assert pa.schema(cur.adbc_statement.get_parameter_schema()).names == ["$1"]


def test_sql_errors_surface_with_the_servers_message(conn):
    with conn.cursor() as cur:
        with pytest.raises(Exception, match="table 'quiver.default.missing' not found"):
            cur.execute("SELECT * FROM missing")
        with pytest.raises(Exception, match="duplicate primary key"):
            cur.execute("INSERT INTO docs VALUES (1, 'again', [0, 0, 0, 1])")
        with pytest.raises(Exception, match="VECTOR\\(4\\) but got a vector of 3 dimensions"):
            cur.execute("INSERT INTO docs VALUES (9, 'short', [1, 2, 3])")
        # Nothing was written, and the server still serves.
        cur.execute("SELECT count(*) FROM docs")
        assert cur.fetchone() == (3,)
