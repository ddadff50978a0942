"""Authentication (basic auth handshake for a bearer token) and TLS, with real clients.

With `--auth` every RPC needs valid credentials (docs/flight.md, Authentication and TLS;
flight-server/src/auth.rs): without them a call is refused with UNAUTHENTICATED before its request
is decoded, whatever it carries — a ticket, a prepared statement handle or a FlightInfo is never a
credential — and has no effect. `test_every_rpc_refuses_missing_and_bad_credentials` checks this
for each RPC pyarrow.flight can make (all but PollFlightInfo), each Flight SQL command through
GetFlightInfo and DoPut, and each action the server lists, against each kind of bad credential.
"""

import base64
import json
import secrets
import shutil
import subprocess

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import (
    exchange,
    flight_sql_command,
    grpc_status,
    message_problems,
    proto_bytes,
    proto_varint,
    put,
    server_message,
)

CREDENTIALS = {"QUIVER_USER": "alice", "QUIVER_PASSWORD": "wonderland"}


@pytest.fixture
def secured(start_server):
    return start_server("--auth", env=CREDENTIALS)


def test_calls_without_credentials_are_refused(secured):
    client = flight.FlightClient(secured.url)
    with pytest.raises(flight.FlightUnauthenticatedError):
        list(client.do_action(flight.Action("GetServerInfo", b"")))
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.authenticate_basic_token("alice", "wrong")
    with pytest.raises(adbc_driver_manager.Error, match="(?i)unauthenticated|authentication"):
        with flight_sql.connect(secured.url) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")


def test_basic_auth_gives_a_token_that_opens_every_call(secured):
    client = flight.FlightClient(secured.url)
    header = client.authenticate_basic_token("alice", "wonderland")
    options = flight.FlightCallOptions(headers=[header])
    results = list(client.do_action(flight.Action("GetServerInfo", b""), options))
    assert json.loads(results[0].body.to_pybytes())["user"] == "alice"

    kwargs = {"username": "alice", "password": "wonderland"}
    with flight_sql.connect(secured.url, db_kwargs=kwargs) as conn, conn.cursor() as cur:
        cur.execute("SELECT 41 + 1 AS answer")
        assert cur.fetchone() == (42,)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_serves_encrypted_connections(start_server, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server = start_server("--tls-cert", str(cert), "--tls-key", str(key))
    assert server.url.startswith("grpc+tls://")
    client = flight.FlightClient(server.url, tls_root_certs=cert.read_bytes())
    assert list(client.do_action(flight.Action("GetServerInfo", b"")))
    # A plaintext client cannot talk to it.
    plain = flight.FlightClient(server.url.replace("grpc+tls://", "grpc://"))
    with pytest.raises(flight.FlightError):
        list(plain.do_action(flight.Action("GetServerInfo", b"")), )


# --- every RPC, every bad credential --------------------------------------------------------------

# A configured fixed token, shaped as the tokens the handshake issues (UUID v4, 32 hex digits).
FIXED_TOKEN = secrets.token_hex(16)


class EmptyHandshake(flight.ClientAuthHandler):
    """A handshake whose credentials are only the call's headers, as Go's and ADBC's clients
    make it: it reads the server's answer and sends no message (a pyarrow client that also writes
    one sometimes waits out its deadline when the server has answered first — with pyarrow's
    own server too)."""

    def authenticate(self, outgoing, incoming):
        incoming.read()

    def get_token(self):
        return b""


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def tampered(token: str) -> str:
    """`token` with its last hex digit changed: the right shape, not the right token."""
    return token[:-1] + ("0" if token[-1] != "0" else "1")


def bad_credentials(issued: str, issued_before_restart: str) -> dict[str, list]:
    """Name -> the call's headers."""
    bearer = lambda token: [(b"authorization", b"Bearer " + token.encode())]  # noqa: E731
    return {
        "no credentials": [],
        "wrong password (basic)": [(b"authorization", basic("alice", "wrong"))],
        "unknown user (basic)": [(b"authorization", basic("mallory", "wonderland"))],
        "malformed basic credentials": [(b"authorization", b"Basic !!!not base64")],
        "bogus bearer token": bearer("nope"),
        "empty bearer token": [(b"authorization", b"Bearer ")],
        "random token of the issued shape": bearer(secrets.token_hex(16)),
        "issued token with one digit changed": bearer(tampered(issued)),
        "fixed token with one digit changed": bearer(tampered(FIXED_TOKEN)),
        "token issued before a restart": bearer(issued_before_restart),
        "unsupported scheme": [(b"authorization", b"Digest username=alice")],
        "credentials in another header": [(b"x-authorization", b"Bearer " + issued.encode())],
    }


def rpcs(client_for, statement: flight.FlightInfo, prepared: bytes, action_types: list[str]) -> dict:
    """Name -> call(options): every RPC, each with a request that valid credentials would make
    work (or fail for another reason than authentication). `client_for()` gives a fresh client."""
    command = lambda name, value=b"": flight.FlightDescriptor.for_command(  # noqa: E731
        flight_sql_command(name, value)
    )
    insert = proto_bytes(1, "INSERT INTO docs VALUES (99, 'intruder', [9, 9, 9, 9])")
    row = pa.table({"id": [99], "title": ["intruder"], "embedding": pa.array([[9.0] * 4], pa.list_(pa.float32(), 4))})
    ingest = proto_bytes(1, proto_varint(1, 1) + proto_varint(2, 2)) + proto_bytes(2, "docs")  # create / append
    ticket = statement.endpoints[0].ticket
    info = statement.serialize()
    calls = {
        "Handshake": lambda o: client_for().authenticate(EmptyHandshake(), o),
        "ListFlights": lambda o: list(client_for().list_flights(b"", o)),
        "GetFlightInfo(path)": lambda o: client_for().get_flight_info(flight.FlightDescriptor.for_path("docs"), o),
        "GetSchema(path)": lambda o: client_for().get_schema(flight.FlightDescriptor.for_path("docs"), o),
        "GetSchema(CommandStatementQuery)": lambda o: client_for().get_schema(
            command("CommandStatementQuery", proto_bytes(1, "SELECT 1")), o
        ),
        "DoGet(a statement's ticket)": lambda o: client_for().do_get(ticket, o).read_all(),
        "DoGet(CommandGetCatalogs)": lambda o: client_for().do_get(
            flight.Ticket(flight_sql_command("CommandGetCatalogs")), o
        ).read_all(),
        "DoPut(CommandStatementUpdate)": lambda o: put(client_for(), command("CommandStatementUpdate", insert), row, o),
        "DoPut(CommandStatementIngest)": lambda o: put(client_for(), command("CommandStatementIngest", ingest), row, o),
        "DoPut(CommandPreparedStatementQuery)": lambda o: put(
            client_for(), command("CommandPreparedStatementQuery", proto_bytes(1, prepared)), pa.table({"$1": [1]}), o
        ),
        "DoPut(CommandPreparedStatementUpdate)": lambda o: put(
            client_for(), command("CommandPreparedStatementUpdate", proto_bytes(1, prepared)), pa.table({"$1": [1]}), o
        ),
        "DoExchange": lambda o: exchange(client_for(), flight.FlightDescriptor.for_path("docs"), row, o),
        "ListActions": lambda o: list(client_for().list_actions(o)),
    }
    sql_commands = {
        "CommandStatementQuery": proto_bytes(1, "SELECT count(*) FROM docs"),
        "CommandStatementUpdate": insert,
        "CommandStatementSubstraitPlan": b"",
        "CommandPreparedStatementQuery": proto_bytes(1, prepared),
        "CommandGetCatalogs": b"",
        "CommandGetDbSchemas": b"",
        "CommandGetTables": proto_varint(5, 1),
        "CommandGetTableTypes": b"",
        "CommandGetSqlInfo": b"",
        "CommandGetPrimaryKeys": proto_bytes(3, "docs"),
        "CommandGetExportedKeys": proto_bytes(3, "docs"),
        "CommandGetImportedKeys": proto_bytes(3, "docs"),
        "CommandGetCrossReference": proto_bytes(3, "docs") + proto_bytes(6, "docs"),
        "CommandGetXdbcTypeInfo": b"",
    }
    for name, value in sql_commands.items():
        calls[f"GetFlightInfo({name})"] = lambda o, d=command(name, value): client_for().get_flight_info(d, o)
    session_option = proto_bytes(1, proto_bytes(1, "quiver.ef") + proto_bytes(2, proto_bytes(1, "64")))
    bodies = {
        "CreatePreparedStatement": flight_sql_command("ActionCreatePreparedStatementRequest", proto_bytes(1, "SELECT 1")),
        "ClosePreparedStatement": close_prepared(prepared),
        "CreatePreparedSubstraitPlan": flight_sql_command("ActionCreatePreparedSubstraitPlanRequest"),
        "BeginTransaction": flight_sql_command("ActionBeginTransactionRequest"),
        "EndTransaction": flight_sql_command("ActionEndTransactionRequest", proto_bytes(1, b"t") + proto_varint(2, 1)),
        "BeginSavepoint": flight_sql_command("ActionBeginSavepointRequest", proto_bytes(1, b"t") + proto_bytes(2, "s")),
        "EndSavepoint": flight_sql_command("ActionEndSavepointRequest", proto_bytes(1, b"s") + proto_varint(2, 1)),
        "CancelQuery": flight_sql_command("ActionCancelQueryRequest", proto_bytes(1, info)),
        "CancelFlightInfo": proto_bytes(1, info),
        "SetSessionOptions": session_option,
        "GetSessionOptions": b"",
        "CloseSession": b"",
        "GetServerInfo": b"{}",
        "CreateSnapshot": b'{"collection": "docs", "name": "intruder"}',
        "DropSnapshot": b'{"collection": "docs", "name": "base"}',
        "ListSnapshots": b"{}",
        "DescribeSnapshot": b'{"collection": "docs", "name": "base"}',
        "RestoreSnapshot": b'{"collection": "docs", "name": "base", "target": "intruder"}',
        "GetRestoreSnapshotState": b'{"job_id": 1}',
        "ListRestoreSnapshotJobs": b"{}",
        "GetJob": b'{"job_id": 1}',
        "CancelJob": b'{"job_id": 1}',
    }
    for action_type in action_types:
        action = flight.Action(action_type, bodies.get(action_type, b"{}"))
        calls[f"DoAction({action_type})"] = lambda o, a=action: list(client_for().do_action(a, o))
    return calls


def test_every_rpc_refuses_missing_and_bad_credentials(start_server, tmp_path, figures):
    data = tmp_path / "root"
    env = {**CREDENTIALS, "QUIVER_TOKEN": FIXED_TOKEN}
    # A token the first server issued: the second, on the same root, must not know it.
    first = start_server("--auth", env=env, data=data)
    _, before_restart = flight.FlightClient(first.url).authenticate_basic_token("alice", "wonderland")
    assert first.stop() == 0
    server = start_server("--auth", env=env, data=data)

    client = flight.FlightClient(server.url)
    header = client.authenticate_basic_token("alice", "wonderland")
    issued = header[1].decode().removeprefix("Bearer ")
    valid = flight.FlightCallOptions(headers=[header], timeout=30)
    with flight_sql.connect(server.url, db_kwargs={"username": "alice", "password": "wonderland"}) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE docs (id BIGINT NOT NULL PRIMARY KEY, title VARCHAR, embedding VECTOR(4))")
            cur.execute("INSERT INTO docs VALUES (1, 'a', [1, 0, 0, 0]), (2, 'b', [0, 1, 0, 0])")
            cur.execute("CREATE SNAPSHOT base ON docs")
    # What the owner made and bad callers will name: a planned statement not yet fetched, and a
    # prepared statement.
    statement = client.get_flight_info(
        flight.FlightDescriptor.for_command(flight_sql_command("CommandStatementQuery", proto_bytes(1, "SELECT id FROM docs"))),
        valid,
    )
    [created] = client.do_action(
        flight.Action(
            "CreatePreparedStatement",
            flight_sql_command("ActionCreatePreparedStatementRequest", proto_bytes(1, "SELECT id FROM docs WHERE id = $1")),
        ),
        valid,
    )
    # ActionCreatePreparedStatementResult in an Any: its handle is field 1 of the Any's value.
    prepared = parse_first_bytes_field(parse_first_bytes_field(created.body.to_pybytes(), 2), 1)
    action_types = sorted(a.type for a in client.list_actions(valid))
    calls = rpcs(lambda: flight.FlightClient(server.url), statement, prepared, action_types)
    credentials = bad_credentials(issued, before_restart.decode().removeprefix("Bearer "))
    refused, failures = 0, []

    def record():
        figures["authentication"] = (
            f"authentication checks: {len(calls) * len(credentials)}, refused {refused} "
            f"({len(calls)} RPCs, commands and actions x {len(credentials)} kinds of bad credential)"
        )

    try:
        for rpc, call in calls.items():
            for name, headers in credentials.items():
                try:
                    call(flight.FlightCallOptions(headers=headers, timeout=30))
                    failures.append(f"{rpc} with {name}: accepted")
                except Exception as e:
                    status, message = grpc_status(e), server_message(e)
                    # pyarrow raises FlightUnauthenticatedError, except from GetSchema (OSError):
                    # the status is what the server said.
                    if status != "UNAUTHENTICATED":
                        failures.append(f"{rpc} with {name}: {type(e).__name__} {status}: {str(e)[:300]}")
                    elif problems := message_problems(message, server.data):
                        failures.append(f"{rpc} with {name}: {problems}: {message}")
                    else:
                        refused += 1
        assert not failures, f"{len(failures)} calls not refused as UNAUTHENTICATED:\n" + "\n".join(failures)

        # The refused calls changed nothing: no row, snapshot, collection, job or session, and the
        # statement and prepared statement they named are still the owner's to use.
        with flight_sql.connect(server.url, db_kwargs={"username": "alice", "password": "wonderland"}) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM docs")
                assert cur.fetchall() == [(2,)]
                cur.execute("SELECT name FROM quiver.snapshots")
                assert cur.fetchall() == [("base",)]
                cur.execute("SELECT name FROM quiver.collections")
                assert cur.fetchall() == [("docs",)]
                cur.execute("SELECT count(*) FROM quiver.jobs")
                assert cur.fetchall() == [(0,)]
        [info] = client.do_action(flight.Action("GetServerInfo", b""), valid)
        assert json.loads(info.body.to_pybytes())["sessions"] == 0
        assert client.do_get(statement.endpoints[0].ticket, valid).read_all().num_rows == 2
        list(client.do_action(flight.Action("ClosePreparedStatement", close_prepared(prepared)), valid))

        # With valid credentials every call is answered, and none as unauthenticated: the
        # refusals above are the credentials', not the requests'.
        for rpc, call in calls.items():
            try:
                call(valid)
            except Exception as e:
                assert grpc_status(e) not in (None, "UNAUTHENTICATED"), f"{rpc} with valid credentials: {e}"
    finally:
        record()


def close_prepared(prepared: bytes) -> bytes:
    """The body of a ClosePreparedStatement action."""
    return flight_sql_command("ActionClosePreparedStatementRequest", proto_bytes(1, prepared))


def parse_first_bytes_field(message: bytes, number: int) -> bytes:
    """The first length-delimited field `number` of a protobuf message (enough to read a handle)."""
    i = 0
    while i < len(message):
        key, i = read_varint(message, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, i = read_varint(message, i)
        elif wire == 2:
            length, i = read_varint(message, i)
            if field == number:
                return message[i : i + length]
            i += length
        else:
            raise ValueError(f"unexpected wire type {wire}")
    raise KeyError(number)


def read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i
