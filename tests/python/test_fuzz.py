"""Hostile input gets a clear error, and the server keeps serving.

What is guaranteed (docs/flight.md, Limits and bad input, Errors; docs/reliability.md, The
server), and checked here against the `quiver serve` binary with seeded random input:

- Every statement and every Flight message is answered: it succeeds, or it is refused with a gRPC
  status and a non-empty message that reaches the client (one small enough for a gRPC trailer).
  The message names no panic, no Rust source location and no path on the server's disk (the data
  root, a cargo registry). Bad input is the client's error, so its status is never INTERNAL or
  UNKNOWN (those mean a bug in the server), and never UNAVAILABLE (the server went away).
- Nothing aborts or hangs the server: the process is alive after every statement and message, and
  answers (`SELECT 1`, `GetServerInfo`) every 10 of them and at the end.

`test_fuzzed_sql_is_answered_clearly` first runs a corpus of valid statements taken from
docs/sql.md (DDL, writes, k-NN in its `ORDER BY` distance and `knn()` forms, snapshots, jobs,
SHOW/DESCRIBE, EXPLAIN) once in order — each must do what the docs say — then QUIVER_FUZZ_CASES
(default 600) mutations of them over ADBC: truncation, token deletion, duplication and swaps,
inserted keywords, literals and stray characters, deep nesting, huge literals, vectors of the wrong
dimension or with bad values, unknown names, bad casts, two statements in one request.

`test_malformed_flight_messages_are_refused_clearly` sends QUIVER_FUZZ_MESSAGES (default 300)
malformed messages with pyarrow.flight: DoGet with random tickets, GetFlightInfo and GetSchema with
command descriptors of random bytes, of Flight SQL `Any`s with garbage values or random protobuf
fields, and path descriptors, DoAction of every action type the server lists with garbage bodies,
DoPut with garbage descriptors and small tables, DoExchange and ListFlights. pyarrow raises a
server's status as a FlightError subclass or, for INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED, as
the matching pyarrow error; either way the status is read from the error.

Both seed from QUIVER_FUZZ_SEED. A failure lists each distinct problem with its reproducer, and
writes every problem case to `fuzz-problems.json` in the test's tmp_path.
"""

import json
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.flight as flight
import pytest
from conftest import (
    FLIGHT_SQL_MESSAGES,
    FLIGHT_SQL_TYPE_URL,
    exchange,
    flight_sql_command,
    grpc_status,
    message_problems,
    proto_any,
    proto_bytes,
    proto_varint,
    put,
    query,
    server_message,
)

SEED = int(os.environ.get("QUIVER_FUZZ_SEED", "4242"))
CASES = int(os.environ.get("QUIVER_FUZZ_CASES", "600"))
MESSAGES = int(os.environ.get("QUIVER_FUZZ_MESSAGES", "300"))
CHECK_EVERY = 10
# A statement or call without an answer after this long hangs: the server's own query timeout is
# shorter, and every statement here is small (the largest, 1 MB of text, parses in well under
# a second on a debug build). The suite stops at the first hang: the server is busy with it.
CLIENT_TIMEOUT = 20
SERVE_ARGS = ("--query-timeout", "10s")
# Statuses that never answer bad input: a bug in the server, or the server gone.
NOT_CLEAR = {None, "INTERNAL", "UNKNOWN", "UNAVAILABLE", "DATA_LOSS"}

FIXTURE = [
    "CREATE DATABASE shop",
    "CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, category VARCHAR, embedding VECTOR(4))",
    "INSERT INTO docs SELECT value, 'doc ' || value, CASE WHEN value % 2 = 0 THEN 'x' ELSE 'y' END, "
    "make_array(value % 7, value % 5, value % 3, 1.0) FROM generate_series(1, 64)",
    "CREATE TABLE questions (qid BIGINT, v VECTOR(4))",
    "INSERT INTO questions VALUES (1, [0.1, 0.2, 0.3, 0.4]), (2, [1, 0, 0, 0]), (3, [0, 0, 1, 1])",
    "CREATE TABLE shop.items (id BIGINT NOT NULL PRIMARY KEY, name VARCHAR, emb FLOAT[4])",
    "INSERT INTO shop.items VALUES (1, 'a', [1, 2, 3, 4]), (2, 'b', [4, 3, 2, 1])",
    "CREATE SNAPSHOT nightly ON docs",
]

# Valid statements after docs/sql.md, in an order in which each does what the docs say; the
# second item is None (succeeds) or a pattern of the error the docs promise.
CORPUS = [
    ("SHOW DATABASES", None),
    ("CREATE DATABASE IF NOT EXISTS scratch_db", None),
    ("CREATE SCHEMA IF NOT EXISTS scratch_db", None),
    ("DROP DATABASE IF EXISTS scratch_db CASCADE", None),
    ("CREATE TABLE IF NOT EXISTS scratch (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, embedding VECTOR(4))", None),
    ("CREATE TABLE IF NOT EXISTS scratch_pair (a INT NOT NULL, b VARCHAR NOT NULL, h HALFVEC(4), f FLOAT[4], PRIMARY KEY (a, b))", None),
    ("CREATE TABLE scratch_ctas AS SELECT id, title FROM docs WHERE id < 10", None),
    ("DESCRIBE docs", None),
    ("SHOW TABLES", None),
    ("SELECT * FROM quiver.collections", None),
    ("SELECT * FROM quiver.databases", None),
    ("ALTER TABLE scratch SET TBLPROPERTIES ('owner' = 'search', 'ttl' = '7d')", None),
    ("ALTER TABLE scratch SET (ttl = NULL)", None),
    ("INSERT INTO scratch VALUES (1, 'a', [0.1, 0.2, 0.3, 0.4]), (2, 'b', [0.9, 0.1, 0.0, 0.2])", None),
    ("INSERT INTO scratch (id, title) SELECT id + 100, title FROM docs WHERE id < 5", None),
    ("REPLACE INTO scratch VALUES (1, 'c', [0.4, 0.3, 0.2, 0.1])", None),
    ("UPDATE scratch SET title = 'x' WHERE id = 1", None),
    ("UPDATE scratch SET title = 'near' WHERE l2_distance(embedding, [0.1, 0.2, 0.3, 0.4]) < 0.5", None),
    ("DELETE FROM scratch WHERE id = 2", None),
    ("COPY scratch FROM 'file.parquet'", "PERMISSION_DENIED"),
    ("COPY scratch FROM 'file.csv' WITH (FORMAT csv, HEADER true, DELIMITER ',')", "PERMISSION_DENIED"),
    ("SELECT id, title, l2_distance(embedding, [0.1, 0.2, 0.3, 0.5]) AS d FROM docs ORDER BY d LIMIT 5", None),
    ("SELECT id, embedding <-> [0.1, 0.2, 0.3, 0.4] AS d FROM docs WHERE category = 'x' ORDER BY d LIMIT 10", None),
    ("SELECT id FROM docs ORDER BY inner_product(embedding, [0.1, 0.2, 0.3, 0.4]) DESC LIMIT 10", None),
    ("SELECT id FROM docs WHERE cosine_distance(embedding, [0.1, 0.2, 0.3, 0.4]) < 0.3", None),
    ("SELECT id, embedding <=> [1, 0, 0, 0] AS c, embedding <#> [1, 0, 0, 0] AS ip FROM docs LIMIT 3", None),
    ("SELECT l2_norm(embedding), vector_dims(embedding), to_vector('[1, 2, 3, 4]', 4) FROM docs LIMIT 2", None),
    ("SELECT array_distance(embedding, [0.1, 0.2, 0.3, 0.4]) AS a, array_inner_product(embedding, [1, 1, 1, 1]) AS b FROM docs LIMIT 2", None),
    ("WITH q AS (SELECT id, l2_distance(embedding, [1, 2, 3, 4]) AS d FROM docs) SELECT id FROM q ORDER BY d LIMIT 3", None),
    ("SELECT query_qid, id, distance FROM knn('docs', 'embedding', (SELECT qid, v FROM questions), 3)", None),
    ("SELECT query_index, id, distance FROM knn((SELECT * FROM docs WHERE category = 'x'), 'embedding', 'questions', 2, 'cosine')", None),
    ("SELECT query_qid, id FROM knn('docs@nightly', 'embedding', (SELECT qid, v FROM questions), 1, 'inner_product')", None),
    ("SELECT id FROM docs WHERE id IN (1, 2, 3)", None),
    ("SELECT id, title FROM docs WHERE id = 42", None),
    ("SELECT count(*) FROM shop.items", None),
    ("SELECT repeat('ab', 3)", None),
    ("CREATE INDEX IF NOT EXISTS emb_idx ON docs USING IVF_FLAT (embedding) WITH (metric = 'l2', num_partitions = 2)", None),
    ("SHOW INDEXES FROM docs", None),
    ("SET quiver.nprobes = 32", None),
    ("SET quiver.ef = 200", None),
    ("SET quiver.use_index = false", None),
    ("EXPLAIN SELECT id FROM docs ORDER BY l2_distance(embedding, [0.1, 0.2, 0.3, 0.4]) LIMIT 3", None),
    ("EXPLAIN ANALYZE SELECT id, embedding <-> [1, 0, 0, 0] AS d FROM docs ORDER BY d LIMIT 3", None),
    ("DROP INDEX IF EXISTS emb_idx ON docs", None),
    ("CREATE SNAPSHOT fuzz_snap ON docs COMMENT 'before re-embedding'", None),
    ("SHOW SNAPSHOTS ON docs", None),
    ("SELECT * FROM quiver.snapshots", None),
    ("DESCRIBE SNAPSHOT nightly ON docs", None),
    ("SELECT id, title FROM snapshot('docs', 'nightly') WHERE category = 'x'", None),
    ('SELECT count(*) FROM "docs@nightly"', None),
    ("DROP SNAPSHOT IF EXISTS fuzz_snap ON docs", None),
    ("EXPLAIN RESTORE SNAPSHOT nightly ON docs TO x", None),
    ("RESTORE SNAPSHOT nightly ON docs TO docs_restored", None),
    ("RESTORE SNAPSHOT nightly ON docs TO docs_clone WITH (mode = 'zero_copy')", None),
    ("RESTORE TABLE docs TO SNAPSHOT nightly", None),
    ("VACUUM DRY RUN", None),
    ("VACUUM docs DRY RUN WITH (retention_seconds = 604800, grace_seconds = 3600)", None),
    ("EXPLAIN VACUUM", None),
    ("SHOW JOBS", None),
    ("SELECT * FROM quiver.jobs", None),
    ("CANCEL JOB 7777", "NOT_FOUND"),
    ("DROP TABLE IF EXISTS scratch_ctas", None),
]

# --- mutations ----------------------------------------------------------------------------------

TOKEN = re.compile(
    r"""\s*(?:'(?:[^']|'')*'|"[^"]*"|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\w+|<->|<=>|<\#>|::|<=|>=|<>|!=|\S)"""
)
VECTOR_LITERAL = re.compile(r"\[[^\[\]]*\]")
KEYWORDS = [
    "SELECT", "FROM", "WHERE", "ORDER BY", "LIMIT", "JOIN", "UNION", "GROUP BY", "HAVING", "NOT",
    "NULL", "AND", "OR", "AS", "ON", "TO", "IN", "EXISTS", "CASE", "WHEN", "END", "DISTINCT",
    "CREATE", "DROP", "TABLE", "SNAPSHOT", "INDEX", "RESTORE", "VACUUM", "EXPLAIN", "WITH",
    "CASCADE", "PRIMARY KEY", "VECTOR", "knn", "snapshot", "DRY RUN", "USING", "OVER ()",
]
LITERALS = [
    "0", "-1", "1.5", "2147483648", "9223372036854775808", "-9223372036854775809",
    "1e400", "1e-400", "99999999999999999999999999999999", "'x'", "''", "'it''s'", "NULL", "true",
    "'NaN'", "'inf'", "X'DEADBEEF'", "DATE '2024-02-30'", "INTERVAL '1' YEAR", "[]", "[1]", "[[1]]",
    "$1", "?", "'\u00e9\u00e8\u4e2d\u6587'", "'\U0001f4a5'",
]
JUNK = ["'", '"', "--", "/*", ";", "\\", "(", ")", "[", "]", ",", "@", "#", "`", "\u202e", "\ufeff", "\u00a0"]
UNKNOWN_NAMES = [
    "nope", '"Weird Name"', "shop.nope", "nope.docs", '"docs@nope"', "quiver.nope", "\u00fcmlaut",
    "a" * 300, '"../../etc/passwd"', "_", '"quiver"', "default.nope",
]
TYPES = [
    "BIGINT", "INT", "SMALLINT", "VECTOR(3)", "VECTOR(4)", "VECTOR(0)", "VECTOR(100000000)",
    "FLOAT[4]", "FLOAT[2]", "HALFVEC(4)", "BYTEA", "DATE", "TIMESTAMP", "BOOLEAN", "DECIMAL(38, 10)",
    "VARCHAR", "nonsense_type", "INTERVAL", "FLOAT[]",
]
NESTING = ["(", "abs(", "-(", "NOT (", "coalesce(", "(SELECT "]
DEPTHS = [8, 30, 49, 50, 51, 80, 300]
HUGE_NUMBERS = ["2147483648", "9223372036854775807", "18446744073709551616", "1e308", "-1e308", "10000000000"]


def vector_text(values) -> str:
    return "[" + ", ".join(str(v) for v in values) + "]"


class Mutator:
    """Seeded mutations of corpus statements."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        # Syntactic mutations mostly stop at the parser; the semantic ones (weighted up) reach
        # the planner and the engine with statements that parse.
        self.operators = {
            self.truncate: 1, self.delete_token: 1, self.duplicate_token: 1, self.swap_tokens: 1,
            self.insert_keyword: 1, self.insert_literal: 1, self.insert_junk: 1,
            self.two_statements: 1, self.nest: 2, self.huge_literal: 2, self.wrong_vector: 3,
            self.unknown_name: 2, self.bad_cast: 2,
        }

    def mutate(self, sql: str) -> tuple[str, list[str]]:
        """`sql` after 1 to 3 random mutations, and their names."""
        names = []
        operators, weights = list(self.operators), list(self.operators.values())
        for _ in range(self.rng.choice([1, 1, 1, 2, 2, 3])):
            [operator] = self.rng.choices(operators, weights)
            sql = operator(sql)
            names.append(operator.__name__)
        return sql, names

    def tokens(self, sql: str) -> list[str]:
        """The statement as tokens, each with the whitespace before it: joined, they give it back."""
        return TOKEN.findall(sql) or [sql]

    def pick(self, items: list):
        return self.rng.randrange(len(items)) if items else 0

    def truncate(self, sql: str) -> str:
        return sql[: self.rng.randrange(max(1, len(sql)))]

    def delete_token(self, sql: str) -> str:
        tokens = self.tokens(sql)
        del tokens[self.pick(tokens)]
        return "".join(tokens)

    def duplicate_token(self, sql: str) -> str:
        tokens = self.tokens(sql)
        i = self.pick(tokens)
        tokens.insert(i, tokens[i] if tokens[i][:1].isspace() else " " + tokens[i])
        return "".join(tokens)

    def swap_tokens(self, sql: str) -> str:
        tokens = self.tokens(sql)
        i, j = self.pick(tokens), self.pick(tokens)
        a, b = tokens[i], tokens[j]
        # Keep each position's whitespace; exchange the tokens themselves.
        tokens[i] = a[: len(a) - len(a.lstrip())] + b.lstrip()
        tokens[j] = b[: len(b) - len(b.lstrip())] + a.lstrip()
        return "".join(tokens)

    def insert_at_random(self, sql: str, text: str) -> str:
        tokens = self.tokens(sql)
        tokens.insert(self.rng.randrange(len(tokens) + 1), " " + text + " ")
        return "".join(tokens)

    def insert_keyword(self, sql: str) -> str:
        return self.insert_at_random(sql, self.rng.choice(KEYWORDS))

    def insert_literal(self, sql: str) -> str:
        return self.insert_at_random(sql, self.rng.choice(LITERALS))

    def insert_junk(self, sql: str) -> str:
        i = self.rng.randrange(len(sql) + 1)
        return sql[:i] + self.rng.choice(JUNK) + sql[i:]

    def nest(self, sql: str) -> str:
        depth = self.rng.choice(DEPTHS)
        if self.rng.random() < 0.3 and sql.lstrip().upper().startswith("SELECT"):
            return "SELECT * FROM (" * depth + sql + ") AS n" * depth
        opener = self.rng.choice(NESTING)
        closer = " AS n)" if opener == "(SELECT " else ")"
        tokens = self.tokens(sql)
        literals = [i for i, t in enumerate(tokens) if re.fullmatch(r"\s*(\d.*|'.*'|\w+)", t)]
        i = self.rng.choice(literals) if literals else self.pick(tokens)
        tokens[i] = " " + opener * depth + tokens[i].lstrip() + closer * depth
        return "".join(tokens)

    def huge_literal(self, sql: str) -> str:
        kind = self.rng.choice(["string", "number", "vector", "in_list", "repeat"])
        if kind == "string" and "'" in sql:
            return re.sub(r"'(?:[^']|'')*'", "'" + "x" * self.rng.choice([10_000, 1_000_000]) + "'", sql, count=1)
        if kind == "vector" and VECTOR_LITERAL.search(sql):
            n = self.rng.choice([1_000, 100_000])
            return VECTOR_LITERAL.sub(vector_text([0.5] * n), sql, count=1)
        if kind == "in_list":
            values = ", ".join(str(i) for i in range(self.rng.choice([10_000, 10_001, 50_000])))
            return self.insert_at_random(sql, f"id IN ({values})")
        if kind == "repeat":
            return self.insert_at_random(sql, f"repeat('x', {self.rng.choice(HUGE_NUMBERS)})")
        numbers = [m.span() for m in re.finditer(r"\b\d+(?:\.\d+)?\b", sql)]
        if not numbers:
            return self.insert_literal(sql)
        start, end = self.rng.choice(numbers)
        return sql[:start] + self.rng.choice(HUGE_NUMBERS) + sql[end:]

    def wrong_vector(self, sql: str) -> str:
        replacement = self.rng.choice(
            [
                vector_text([]),
                vector_text([0.1]),
                vector_text([0.1, 0.2, 0.3]),
                vector_text([0.1] * 5),
                vector_text([0.1] * 384),
                "[1, NULL, 2, 3]",
                "['NaN', 0, 0, 0]",
                "[1e39, 0, 0, 0]",
                "['a', 'b', 'c', 'd']",
                "[[1, 2], [3, 4]]",
                "[1, 2, 3, 4",
                "to_vector('[1, 2, 3]', 4)",
                "to_vector('not a vector')",
                "make_array(1, 2, 3, 4, 5)",
            ]
        )
        if VECTOR_LITERAL.search(sql):
            return VECTOR_LITERAL.sub(lambda _: replacement, sql, count=1)
        return self.insert_at_random(sql, replacement)

    def unknown_name(self, sql: str) -> str:
        tokens = self.tokens(sql)
        words = [i for i, t in enumerate(tokens) if re.fullmatch(r"\s*[a-z_][a-z_0-9]*", t)]
        if not words:
            return self.insert_at_random(sql, self.rng.choice(UNKNOWN_NAMES))
        i = self.rng.choice(words)
        tokens[i] = " " + self.rng.choice(UNKNOWN_NAMES)
        return "".join(tokens)

    def bad_cast(self, sql: str) -> str:
        tokens = self.tokens(sql)
        values = [i for i, t in enumerate(tokens) if re.fullmatch(r"\s*(\d.*|'.*'|[a-z_]\w*|\])", t)]
        target = self.rng.choice(TYPES)
        if not values:
            return self.insert_at_random(sql, f"CAST('abc' AS {target})")
        i = self.rng.choice(values)
        if self.rng.random() < 0.5:
            tokens[i] = tokens[i] + "::" + target
        else:
            tokens[i] = f" CAST({tokens[i].lstrip()} AS {target})"
        return "".join(tokens)

    def two_statements(self, sql: str) -> str:
        return sql + "; " + self.rng.choice(CORPUS)[0]


# --- bookkeeping ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the cases got, and the problem cases (each a JSON-able dict with its reproducer)."""

    succeeded: int = 0
    refused: int = 0
    # Refused by the SQL parser (the rest reached the planner or further).
    unparsed: int = 0
    statuses: Counter = field(default_factory=Counter)
    problems: list = field(default_factory=list)

    def answer(self, error: BaseException | None, data_root, case: dict, result: pa.Table | None = None):
        """Counts one answer (an error, or a result); records a problem if it was not a clear one."""
        if error is None:
            if result is not None and names_path(result, data_root):
                # docs/flight.md: plans and listings name files relative to the data root.
                self.problems.append({**case, "status": "OK", "problems": ["result names the data root's path"],
                                      "message": "", "error": ""})
            else:
                self.succeeded += 1
            return
        status = grpc_status(error)
        message = server_message(error)
        problems = message_problems(message, data_root)
        if status in NOT_CLEAR:
            problems.append(f"status {status}")
        if "metadata size exceeds" in str(error):
            # The server's message outgrew what the client accepts in a trailer: it never saw the
            # server's status, only its own RESOURCE_EXHAUSTED.
            problems.append("message over gRPC's metadata limit, dropped by the client")
        if problems:
            self.problems.append(
                {**case, "status": status, "problems": problems, "message": message[:2000], "error": str(error)[:2000]}
            )
        else:
            self.refused += 1
            self.statuses[status] += 1
            self.unparsed += "ParserError" in message

    def write_problems(self, path):
        if self.problems:
            path.write_text(json.dumps(self.problems, indent=1))

    def summary_of_problems(self, path) -> str:
        """One line per distinct problem (status and the start of the message), with the first
        reproducer of each; every problem case is in `path`."""
        distinct = {}
        for problem in self.problems:
            # The message up to its first colon names the kind of failure.
            message = problem["message"].split(":")[0][:80]
            key = (problem.get("rpc"), problem["status"], tuple(problem["problems"]), message)
            distinct.setdefault(key, []).append(problem)
        lines = [f"{len(self.problems)} unclear answers, {len(distinct)} distinct (all in {path}):"]
        for (_, status, problems, _), cases in distinct.items():
            first = cases[0]
            reproducer = {k: v for k, v in first.items() if k not in ("status", "problems", "message", "error")}
            lines.append(
                f"- {status} {list(problems)} x{len(cases)}: {shorten(json.dumps(reproducer), 400)}\n"
                f"  -> {shorten(first['error'], 400)}"
            )
        return "\n".join(lines)

    def by_status(self) -> str:
        return ", ".join(f"{status} {n}" for status, n in self.statuses.most_common())


def names_path(table: pa.Table, data_root) -> bool:
    """Whether a text value of `table` holds the data root's absolute path."""
    roots = {str(data_root), str(data_root.resolve())}
    for column in table.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            for root in roots:
                if pc.any(pc.match_substring(column, root)).as_py():
                    return True
    return False


def liveness(server, hung: int | None) -> str:
    if hung is not None:
        return f"SERVER HUNG on case {hung}"
    return "server alive after each" if server.alive() else "SERVER DIED"


def fail_hung(server, tally: Tally, case: dict, error: BaseException | None):
    """Fails the test for a call that got no answer in time, saying whether the server still
    answers other clients meanwhile; kills the server, which is still busy with the call (a
    SIGTERM would wait for it)."""
    try:
        [info] = flight.FlightClient(server.url).do_action(
            flight.Action("GetServerInfo", b""), flight.FlightCallOptions(timeout=5)
        )
        others = "still answers other clients" if info.body else "answers oddly"
    except Exception as e:
        others = f"does not answer other clients either (GetServerInfo: {type(e).__name__} after 5 s)"
    tally.problems.append({**case, "status": grpc_status(error) if error else None, "message": "",
                           "problems": [f"no answer within {CLIENT_TIMEOUT} s"], "error": str(error)[:2000]})
    server.process.kill()
    pytest.fail(
        f"no answer within {CLIENT_TIMEOUT} s; meanwhile the server {others}: "
        f"{shorten(json.dumps(case), 2000)}; the client got {error}"
    )


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


# --- SQL ----------------------------------------------------------------------------------------

ADBC_TIMEOUTS = {
    f"adbc.flight.sql.rpc.timeout_seconds.{call}": str(CLIENT_TIMEOUT) for call in ("fetch", "query", "update")
}


def execute(conn, sql: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def fixture_is_intact(conn) -> bool:
    try:
        return (
            execute(conn, "SELECT count(*) AS n FROM docs").column("n")[0].as_py() == 64
            and execute(conn, "SELECT count(*) AS n FROM snapshot('docs', 'nightly')").column("n")[0].as_py() == 64
        )
    except Exception:
        return False


def rebuild_fixture(conn):
    """Puts the fixture back after a mutation broke it (a dropped snapshot, a rolled-back table)."""
    for sql in ["DROP TABLE IF EXISTS docs CASCADE", "DROP TABLE IF EXISTS questions",
                "DROP DATABASE IF EXISTS shop CASCADE"]:
        execute(conn, sql)
    for sql in FIXTURE:
        execute(conn, sql)


def test_fuzzed_sql_is_answered_clearly(start_server, tmp_path, figures):
    server = start_server(*SERVE_ARGS)
    rng = random.Random(SEED)
    mutator = Mutator(rng)
    tally = Tally()
    rebuilds = 0
    cases_run = 0
    hung = None

    def record():
        alive = liveness(server, hung)
        figures["fuzzed SQL"] = (
            f"fuzzed SQL statements: {cases_run}, answered {tally.succeeded + tally.refused} "
            f"(succeeded {tally.succeeded}, refused {tally.refused}: {tally.by_status()}), {alive}; "
            f"{tally.succeeded + tally.refused - tally.unparsed} of them past the parser; corpus of "
            f"{len(CORPUS)} documented statements as documented; fixture rebuilt {rebuilds}x; seed {SEED}"
        )
        tally.write_problems(tmp_path / "fuzz-problems.json")

    try:
        with flight_sql.connect(server.url, db_kwargs=ADBC_TIMEOUTS) as conn:
            for sql in FIXTURE:
                execute(conn, sql)
            # The corpus, unmutated, does what docs/sql.md says.
            for sql, expected in CORPUS:
                if expected is None:
                    execute(conn, sql)
                else:
                    with pytest.raises(Exception) as refused:
                        execute(conn, sql)
                    assert grpc_status(refused.value) == expected, f"{sql}: {refused.value}"
                    assert not message_problems(server_message(refused.value), server.data), str(refused.value)

            for n in range(CASES):
                base, _ = rng.choice(CORPUS)
                sql, mutations = mutator.mutate(base)
                started = time.monotonic()
                error = result = None
                try:
                    result = execute(conn, sql)
                except Exception as e:
                    error = e
                cases_run += 1
                case = {"case": n, "mutations": mutations, "sql": sql}
                if time.monotonic() - started >= CLIENT_TIMEOUT:
                    hung = n
                    fail_hung(server, tally, case, error)
                tally.answer(error, server.data, case, result)
                if not server.alive():
                    server.process.wait(timeout=10)
                    pytest.fail(
                        f"the server exited ({server.process.returncode}) after case {n} "
                        f"{shorten(sql, 2000)!r}: {error}"
                    )
                if (n + 1) % CHECK_EVERY == 0 or n == CASES - 1:
                    assert execute(conn, "SELECT 1 AS one").column("one").to_pylist() == [1], f"after case {n}"
                    if not fixture_is_intact(conn):
                        rebuild_fixture(conn)
                        rebuilds += 1
        assert query(server.url, "SELECT 1 AS one").column("one").to_pylist() == [1]
        assert not tally.problems, tally.summary_of_problems(tmp_path / "fuzz-problems.json")
        # The fuzzing reached the engine: most statements got past the parser.
        assert tally.succeeded + tally.refused - tally.unparsed > CASES // 3, "the parser refused almost everything"
    finally:
        record()


# --- Flight messages --------------------------------------------------------------------------

JSON_BODIES = [
    b"{not json", b"[]", b"null", b"42", b'"text"', b"{}" * 2, b'{"collection": 5}',
    b'{"collection": "docs", "name": 7}', b'{"job_id": -1}', b'{"job_id": 1e30}', b'{"job_id": "1"}',
    b'{"job_id": 18446744073709551616}', b'{"collection": "../../etc", "name": "passwd"}',
    b'{"collection": "docs", "name": "../../x"}', b'{"collection": "docs", "name": "nightly", "mode": "bogus"}',
    b'{"collection": "docs", "name": "nightly", "target": "../outside"}',
    b'{"collection": "nope", "name": "nightly"}', b'{"collection": "docs", "name": "' + b"n" * 5000 + b'"}',
    b'{"collection": "docs", "database": "\xff\xfe"}', b"\xef\xbb\xbf{}",
    b'{"collection": {"nested": [1, 2, {"deep": null}]}}', b"[" * 10_000 + b"]" * 10_000,
]


class MessageFuzzer:
    """Seeded malformed Flight calls, each a (reproducer, call) pair."""

    def __init__(self, rng: random.Random, action_types: list[str]):
        self.rng = rng
        self.action_types = action_types
        # Weighted to the calls that carry commands, tickets and data into the service.
        self.kinds = {
            self.do_get: 3, self.get_flight_info: 3, self.get_schema: 1, self.do_action: 4,
            self.do_put: 3, self.do_exchange: 1, self.list_flights: 1,
        }

    def case(self) -> tuple[dict, Callable[[flight.FlightClient, flight.FlightCallOptions], None]]:
        [kind] = self.rng.choices(list(self.kinds), list(self.kinds.values()))
        return kind()

    # --- garbage ---

    def random_bytes(self) -> bytes:
        n = self.rng.choice([0, 1, 2, 3, 8, 33, 200, 4096, 100_000])
        return self.rng.randbytes(n)

    def random_protobuf(self) -> bytes:
        """Well-formed protobuf with random fields: decodes, but not to what a handler wants."""
        out = b""
        for _ in range(self.rng.randrange(1, 6)):
            number = self.rng.choice([1, 2, 3, 4, 5, 6, 15, 1000, 536870911])
            if self.rng.random() < 0.5:
                out += proto_varint(number, self.rng.choice([0, 1, 2**31, 2**63, 2**64 - 1]))
            else:
                out += proto_bytes(number, self.rng.choice([b"", self.random_bytes(), b"SELECT 1", "\u00e9".encode()]))
        return out

    def command(self) -> tuple[str, bytes]:
        """A descriptor command or ticket: garbage, or an Any of garbage."""
        kind = self.rng.choice(["bytes", "known garbage", "known fields", "unknown type", "empty any"])
        name = self.rng.choice(FLIGHT_SQL_MESSAGES)
        if kind == "bytes":
            return kind, self.random_bytes()
        if kind == "known garbage":
            return f"{kind} {name}", flight_sql_command(name, self.random_bytes())
        if kind == "known fields":
            return f"{kind} {name}", flight_sql_command(name, self.random_protobuf())
        if kind == "unknown type":
            url = self.rng.choice([FLIGHT_SQL_TYPE_URL + "CommandNope", "", "x" * 10_000, "type.googleapis.com/\u00e9"])
            return kind, proto_any(url, self.random_bytes())
        return kind, flight_sql_command(name)

    def descriptor(self) -> tuple[str, flight.FlightDescriptor]:
        if self.rng.random() < 0.2:
            path = [self.rng.choice(["docs", "..", "/etc/passwd", "", "\u00e9", "x" * 1000]) for _ in range(self.rng.randrange(0, 4))]
            return f"path {path!r}", flight.FlightDescriptor.for_path(*path)
        kind, command = self.command()
        return f"command ({kind}) {command!r}", flight.FlightDescriptor.for_command(command)

    def table(self) -> pa.Table:
        columns = {
            "id": pa.array([1, 2], pa.int64()),
            "title": pa.array(["a", None]),
            "embedding": pa.array([[0.1, 0.2, 0.3, 0.4], None], pa.list_(pa.float32(), 4)),
            "blob": pa.array([b"\x00", b"\xff"]),
            "flag": pa.array([True, False]),
            "nothing": pa.nulls(2),
        }
        chosen = self.rng.sample(list(columns), self.rng.randrange(1, len(columns) + 1))
        return pa.table({name: columns[name] for name in chosen})

    # --- calls ---

    def do_get(self):
        kind, ticket = self.command()
        if self.rng.random() < 0.2:
            kind, ticket = "ticket of an unknown statement", flight_sql_command(
                "TicketStatementQuery", proto_bytes(1, self.rng.randbytes(16))
            )
        return {"rpc": "DoGet", "ticket": f"({kind}) {ticket!r}"}, lambda c, o: c.do_get(flight.Ticket(ticket), o).read_all()

    def get_flight_info(self):
        what, descriptor = self.descriptor()
        return {"rpc": "GetFlightInfo", "descriptor": what}, lambda c, o: c.get_flight_info(descriptor, o)

    def get_schema(self):
        what, descriptor = self.descriptor()
        return {"rpc": "GetSchema", "descriptor": what}, lambda c, o: c.get_schema(descriptor, o)

    def do_action(self):
        action_type = self.rng.choice(self.action_types + ["Nope", "", "x" * 1000])
        body = self.rng.choice([self.random_bytes(), self.rng.choice(JSON_BODIES), self.command()[1], self.random_protobuf()])
        action = flight.Action(action_type, body)
        return {"rpc": "DoAction", "type": action_type, "body": repr(body)}, lambda c, o: list(c.do_action(action, o))

    def do_put(self):
        what, descriptor = self.descriptor()
        table = self.table()
        return {"rpc": "DoPut", "descriptor": what, "columns": table.column_names}, lambda c, o: put(c, descriptor, table, o)

    def do_exchange(self):
        what, descriptor = self.descriptor()
        table = self.table()
        return (
            {"rpc": "DoExchange", "descriptor": what, "columns": table.column_names},
            lambda c, o: exchange(c, descriptor, table, o),
        )

    def list_flights(self):
        criteria = self.random_bytes()
        return {"rpc": "ListFlights", "criteria": repr(criteria)}, lambda c, o: list(c.list_flights(criteria, o))


def test_malformed_flight_messages_are_refused_clearly(start_server, tmp_path, figures):
    server = start_server(*SERVE_ARGS)
    query(server.url, FIXTURE[1])
    query(server.url, FIXTURE[2])
    query(server.url, FIXTURE[-1])
    client = flight.FlightClient(server.url)
    options = flight.FlightCallOptions(timeout=CLIENT_TIMEOUT)
    action_types = sorted(a.type for a in client.list_actions(options))
    assert {"GetServerInfo", "CreateSnapshot", "CancelFlightInfo", "CreatePreparedStatement"} <= set(action_types)
    fuzzer = MessageFuzzer(random.Random(SEED), action_types)
    tally = Tally()
    sent = 0
    hung = None

    def record():
        alive = liveness(server, hung)
        harmless = f", accepted harmlessly {tally.succeeded}" if tally.succeeded else ""
        figures["Flight messages"] = (
            f"malformed Flight messages: {sent}, refused {tally.refused}{harmless} "
            f"({tally.by_status()}), {alive}; {len(action_types)} action types; seed {SEED}"
        )
        tally.write_problems(tmp_path / "fuzz-problems.json")

    def answers():
        [info] = client.do_action(flight.Action("GetServerInfo", b""), options)
        return json.loads(info.body.to_pybytes())["name"] == "Quiver"

    try:
        for n in range(MESSAGES):
            case, call = fuzzer.case()
            started = time.monotonic()
            error = None
            try:
                call(client, options)
            except (pa.ArrowException, flight.FlightError) as e:
                error = e
            sent += 1
            if time.monotonic() - started >= CLIENT_TIMEOUT:
                hung = n
                fail_hung(server, tally, {"case": n, **case}, error)
            tally.answer(error, server.data, {"case": n, **case})
            if not server.alive():
                server.process.wait(timeout=10)
                pytest.fail(f"the server exited ({server.process.returncode}) after {case}: {error}")
            if (n + 1) % CHECK_EVERY == 0:
                assert answers(), f"after case {n}"
        assert answers()
        assert query(server.url, "SELECT count(*) AS n FROM docs").column("n").to_pylist() == [64]
        assert not tally.problems, tally.summary_of_problems(tmp_path / "fuzz-problems.json")
    finally:
        record()
