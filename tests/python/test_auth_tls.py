"""Authentication (basic auth handshake for a bearer token) and TLS, with real clients."""

import json
import shutil
import subprocess

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow.flight as flight
import pytest

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
