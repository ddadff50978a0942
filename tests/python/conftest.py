"""Fixtures for Quiver's client tests: each test gets its own `quiver serve` process on a free
loopback port over a fresh data root, and stops it with SIGTERM afterwards.

Also shared by the suites: ADBC shortcuts (`query`, `rows`), Flight SQL commands encoded by hand
(`flight_sql_command`), reading a gRPC status and the server's message out of a client error
(`grpc_status`, `server_message`), the checks every error message must pass (`message_problems`),
and `figures`: lines a suite reports, printed in pytest's terminal summary (also with `-q`)."""

import os
import re
import signal
import subprocess
from pathlib import Path

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.flight as flight
import pytest

LISTENING = re.compile(r"listening on (grpc(?:\+tls)?://[0-9.]+:\d+)")


class Server:
    """A running `quiver serve`."""

    def __init__(self, process: subprocess.Popen, url: str, data: Path):
        self.process = process
        self.url = url
        self.data = data

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """Sends SIGTERM and returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def quiver_bin() -> str:
    path = os.environ.get("QUIVER_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/quiver-target"))
        path = os.path.join(target, "debug", "quiver")
    if not os.path.exists(path):
        pytest.fail(f"quiver binary not found at {path}: build it or set QUIVER_BIN")
    return path


@pytest.fixture
def start_server(tmp_path):
    """Starts servers with extra `quiver serve` arguments; stops them after the test."""
    started = []

    def start(*args: str, env: dict | None = None, data: str | Path | None = None) -> Server:
        """`data` is the data root (default: a fresh directory under the test's tmp_path)."""
        data = data or tmp_path / f"data{len(started)}"
        command = [quiver_bin(), "--data", str(data), "serve", "--bind", "127.0.0.1:0", *args]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        line = process.stdout.readline()
        match = LISTENING.search(line)
        if not match:
            process.kill()
            pytest.fail(f"quiver serve did not start: {line!r}")
        server = Server(process, match.group(1), data)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(start_server) -> Server:
    """A server without auth."""
    return start_server()


# --- Figures --------------------------------------------------------------------------------------

FIGURES = pytest.StashKey[dict]()


def pytest_configure(config):
    config.stash[FIGURES] = {}


@pytest.fixture(scope="session")
def figures(pytestconfig) -> dict:
    """Lines for the terminal summary, by suite: `figures["fuzzed SQL"] = "fuzzed SQL statements:
    600, ..."` prints `reliability: fuzzed SQL statements: 600, ...`. A suite records its line
    even when it fails, so the summary shows how far it got."""
    return pytestconfig.stash[FIGURES]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(FIGURES, {})
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines.values():
            terminalreporter.write_line(f"reliability: {line}")


# --- ADBC -----------------------------------------------------------------------------------------


def query(url: str, sql: str, db_kwargs: dict | None = None) -> pa.Table:
    """Runs one statement on a fresh ADBC connection and returns its result."""
    with flight_sql.connect(url, db_kwargs=db_kwargs) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def rows(url: str, sql: str) -> list[tuple]:
    """`query`, as a list of row tuples."""
    table = query(url, sql)
    return list(zip(*(column.to_pylist() for column in table.columns)))


# --- Flight SQL commands, encoded by hand (pyarrow has no Flight SQL client) --------------------

FLIGHT_SQL_TYPE_URL = "type.googleapis.com/arrow.flight.protocol.sql."

# Every message type Flight SQL sends as a `google.protobuf.Any`.
FLIGHT_SQL_MESSAGES = [
    "CommandStatementQuery",
    "CommandStatementUpdate",
    "CommandStatementIngest",
    "CommandStatementSubstraitPlan",
    "CommandPreparedStatementQuery",
    "CommandPreparedStatementUpdate",
    "CommandGetCatalogs",
    "CommandGetDbSchemas",
    "CommandGetTables",
    "CommandGetTableTypes",
    "CommandGetSqlInfo",
    "CommandGetPrimaryKeys",
    "CommandGetExportedKeys",
    "CommandGetImportedKeys",
    "CommandGetCrossReference",
    "CommandGetXdbcTypeInfo",
    "TicketStatementQuery",
    "ActionCreatePreparedStatementRequest",
    "ActionClosePreparedStatementRequest",
    "ActionCreatePreparedSubstraitPlanRequest",
    "ActionBeginTransactionRequest",
    "ActionEndTransactionRequest",
    "ActionBeginSavepointRequest",
    "ActionEndSavepointRequest",
    "ActionCancelQueryRequest",
]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def proto_bytes(field: int, value: bytes | str) -> bytes:
    """A length-delimited protobuf field (string, bytes or message)."""
    if isinstance(value, str):
        value = value.encode()
    return varint(field << 3 | 2) + varint(len(value)) + value


def proto_varint(field: int, value: int) -> bytes:
    """A varint protobuf field (integers, enums, bools)."""
    return varint(field << 3) + varint(value)


def proto_any(type_url: str, value: bytes) -> bytes:
    """A `google.protobuf.Any`."""
    return proto_bytes(1, type_url) + proto_bytes(2, value)


def flight_sql_command(name: str, value: bytes = b"") -> bytes:
    """A Flight SQL message `name` (see FLIGHT_SQL_MESSAGES) wrapped in an `Any`, as Flight SQL
    clients put it in a descriptor's command, a ticket or an action body; `value` is the encoded
    message (e.g. `proto_bytes(1, sql)` for a CommandStatementQuery)."""
    return proto_any(FLIGHT_SQL_TYPE_URL + name, value)


def put(client: flight.FlightClient, descriptor: flight.FlightDescriptor, table: pa.Table,
        options: flight.FlightCallOptions | None = None) -> None:
    """A whole DoPut of `table`: the server's refusal surfaces when the writer closes."""
    writer, reader = client.do_put(descriptor, table.schema, options)
    try:
        writer.write_table(table)
        writer.done_writing()
        reader.read()
    finally:
        writer.close()


def exchange(client: flight.FlightClient, descriptor: flight.FlightDescriptor, table: pa.Table,
             options: flight.FlightCallOptions | None = None) -> None:
    """A whole DoExchange sending `table` and reading what comes back."""
    writer, reader = client.do_exchange(descriptor, options)
    try:
        writer.begin(table.schema)
        writer.write_table(table)
        writer.done_writing()
        reader.read_all()
    finally:
        writer.close()


# --- Errors ---------------------------------------------------------------------------------------

GRPC_CODES = [
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
]
# ADBC's Flight SQL driver ends a message with "(<gRPC code in CamelCase>; <call>)" (the call
# such as "Prepare" or "DoGet: endpoint 0: []"), sometimes followed by ". Vendor code: <code>".
_ADBC_CODE = re.compile(r"\((\w+); [^()]*\)(?:\. Vendor code: \d+)?\s*$")
# pyarrow.flight quotes the peer's status: "gRPC client debug context: INVALID_ARGUMENT:..." (or,
# with other gRPC versions, "... grpc_status:3 ...").
_PYARROW_CONTEXT = re.compile(r"gRPC client debug context: ([A-Z_]+):")
_PYARROW_CODE = re.compile(r"grpc_status:(\d+)")
_PYARROW_MESSAGE = re.compile(r"with message: (.*?)(?:\. gRPC client debug context:|\. Detail:|$)", re.S)
_PYARROW_KIND = re.compile(r"(?:Flight|gRPC) returned ([a-z ]+) error")


def grpc_status(error: BaseException) -> str | None:
    """The gRPC status code name (`INVALID_ARGUMENT`) behind an ADBC or pyarrow.flight error,
    or None when the error names none."""
    text = str(error)
    vendor_code = getattr(error, "vendor_code", None)
    if isinstance(vendor_code, int) and 0 < vendor_code < len(GRPC_CODES):
        return GRPC_CODES[vendor_code]
    if (match := _PYARROW_CONTEXT.search(text)) and match.group(1) in GRPC_CODES:
        return match.group(1)
    if match := _PYARROW_CODE.search(text):
        return GRPC_CODES[int(match.group(1))] if int(match.group(1)) < len(GRPC_CODES) else None
    if match := _ADBC_CODE.search(text):
        camel = match.group(1)
        name = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).upper()
        return name if name in GRPC_CODES else None
    if match := _PYARROW_KIND.search(text):
        name = match.group(1).strip().upper().replace(" ", "_")
        return name if name in GRPC_CODES else None
    return None


def server_message(error: BaseException) -> str:
    """The message the server sent, without the client's decoration where it can be told apart."""
    text = str(error)
    if match := _PYARROW_MESSAGE.search(text):
        return match.group(1).strip()
    text = re.sub(r"^[A-Z_]+: \[FlightSQL\] ", "", text)
    return _ADBC_CODE.sub("", text).strip()


_SOURCE_LOCATION = re.compile(r"\.rs:\d+")


# gRPC clients refuse response metadata past 8 KiB at random (the soft limit; always past the hard
# limit), so a longer message may never reach the client.
GRPC_METADATA_SOFT_LIMIT = 8192


def message_problems(message: str, data_root: Path | str) -> list[str]:
    """What is wrong with an error message a client got (empty when it is fine): messages are
    non-empty, fit in gRPC's metadata, and carry no panic, no source location of the build and no
    path of the server's disk (docs/flight.md, Errors)."""
    problems = []
    if not message.strip():
        problems.append("empty message")
    if len(message.encode()) > GRPC_METADATA_SOFT_LIMIT:
        problems.append(f"message of {len(message.encode())} bytes, over gRPC's metadata limit")
    if "panicked" in message:
        problems.append("mentions a panic")
    if _SOURCE_LOCATION.search(message):
        problems.append("names a Rust source location")
    if "/.cargo/" in message:
        problems.append("names a cargo registry path")
    roots = {str(data_root), str(Path(data_root).resolve())}
    if any(root in message for root in roots):
        problems.append("names the data root's absolute path")
    return problems
