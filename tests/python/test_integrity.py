"""Integrity against the quiver binary: primary keys between two servers and between embedded
processes over one data root, statements that used to abort the server, and the memory limit."""

import subprocess
import threading

import adbc_driver_flightsql.dbapi as flight_sql
import pytest
from conftest import quiver_bin

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


EMBEDDED_WRITERS = 4


def test_embedded_processes_over_one_root_let_exactly_one_insert_a_key(tmp_path):
    data = str(tmp_path / "shared")

    def embedded() -> subprocess.Popen:
        return subprocess.Popen(
            [quiver_bin(), "--data", data, "sql"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    create = embedded()
    create.communicate("CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, label VARCHAR);\n", timeout=120)
    # Started together, each commits (or is refused) on its own catalog over the root.
    writers = [embedded() for _ in range(EMBEDDED_WRITERS)]
    for i, writer in enumerate(writers):
        writer.stdin.write(f"INSERT INTO t VALUES (1, 'process {i}');\n")
        writer.stdin.flush()
    outputs = [writer.communicate(timeout=120)[0] for writer in writers]
    refused = [out for out in outputs if "duplicate primary key" in out]
    assert len(refused) == EMBEDDED_WRITERS - 1, outputs
    check = embedded()
    out, _ = check.communicate("SELECT count(*) AS n FROM t WHERE id = 1;\n", timeout=120)
    assert "| 1 " in out, out


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


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


MEMORY_LIMIT_MIB = 64


@pytest.mark.parametrize(
    "sql,refusal",
    [
        # BatchKnnExec: 200 queries of 200,000 rows each (40 million selected).
        ("SELECT count(*) FROM knn('v', 'embedding', (SELECT embedding FROM v LIMIT 200), 200000)", "ResourceExhausted"),
        # A result value that fits the limit once but not the copies sending it takes.
        ("SELECT repeat('x', 30000000) AS big", "ResourceExhausted"),
        # Functions that build huge values from small arguments.
        ("SELECT length(repeat('x', 1073741824))", "would build a value"),
        ("SELECT length(lpad('x', 2000000000))", "would build a value"),
        ("SELECT cardinality(array_repeat(1, 1000000000))", "would build a value"),
        ("SELECT cardinality(range(1000000000000))", "would build a value"),
    ],
)
def test_the_memory_limit_holds_the_servers_peak_memory(start_server, sql, refusal):
    server = start_server("--query-memory-limit", f"{MEMORY_LIMIT_MIB}MiB")
    run(server.url, "CREATE TABLE v (id BIGINT NOT NULL, embedding VECTOR(8))")
    run(
        server.url,
        "INSERT INTO v SELECT value, [value % 7, value % 11, value % 13, 1, 2, 3, 4, 5] "
        "FROM generate_series(1, 200000)",
    )
    before = peak_rss_bytes(server.process.pid)
    with pytest.raises(Exception, match=refusal):
        run(server.url, sql)
    assert run(server.url, "SELECT count(*) FROM v") == [(200000,)]
    # The statement took at most a few times the limit above what the server held before
    # (allocator slack, the statement's own planning, a folded constant): unbounded, each would
    # take from ~200 MiB (a 30 MB value's copies while it is sent) to terabytes.
    grown = peak_rss_bytes(server.process.pid) - before
    assert grown < 4 * MEMORY_LIMIT_MIB * 1024 * 1024, f"peak grew by {grown >> 20} MiB"
    assert server.process.poll() is None
