"""Integrity against the server binary: primary keys between two servers over one data root, and
statements that used to abort the server."""

import threading

import adbc_driver_flightsql.dbapi as flight_sql
import pytest

WRITERS_PER_SERVER = 3
KEYS = 3


def run(url: str, sql: str):
    with flight_sql.connect(url) as conn:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()


def test_two_servers_over_one_root_let_exactly_one_writer_insert_a_key(start_server, tmp_path):
    data = tmp_path / "shared"
    # Each server sees the other's CREATE TABLE before its next statement.
    first = start_server("--catalog-refresh-interval", "0", data=data)
    second = start_server("--catalog-refresh-interval", "0", data=data)
    run(first.url, "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, label VARCHAR)")
    for key in range(1, KEYS + 1):
        barrier = threading.Barrier(2 * WRITERS_PER_SERVER)
        results = []
        lock = threading.Lock()

        def write(url: str, writer: int) -> None:
            barrier.wait()
            try:
                run(url, f"INSERT INTO t VALUES ({key}, 'writer {writer}')")
                outcome = "ok"
            except Exception as e:  # the driver's error types vary by version
                outcome = str(e)
            with lock:
                results.append(outcome)

        threads = [
            threading.Thread(target=write, args=(server.url, i))
            for i, server in enumerate([first, second] * WRITERS_PER_SERVER)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results.count("ok") == 1, results
        assert all("duplicate primary key" in r for r in results if r != "ok"), results
        for server in (first, second):
            assert run(server.url, f"SELECT count(*) FROM t WHERE id = {key}") == [(1,)]


@pytest.mark.parametrize(
    "sql,expected",
    [
        ("SELECT " + "NOT " * 23 + "true", False),
        ("SELECT " + "abs(" * 17 + "-1" + ")" * 17, 1),
        ("SELECT " + "(SELECT " * 10 + "1" + ")" * 10, 1),
        ("SELECT count(*) FROM (SELECT 1 AS a) WHERE " + " OR ".join(["a = 1"] * 80), 1),
        ("SELECT " + "+".join(["1"] * 84), 84),
    ],
)
def test_deeply_nested_statements_are_answered_and_the_server_keeps_serving(server, sql, expected):
    assert run(server.url, sql) == [(expected,)]
    assert run(server.url, "SELECT 1") == [(1,)]
    assert server.process.poll() is None
