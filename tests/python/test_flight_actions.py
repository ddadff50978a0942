"""Custom actions through pyarrow.flight, a server that shuts down cleanly on SIGTERM, and
`quiver sql --connect`."""

import json
import os
import subprocess

import pyarrow as pa
import pyarrow.flight as flight
import pytest


def test_actions_are_listed_and_answer_json(server):
    client = flight.FlightClient(server.url)
    types = {a.type for a in client.list_actions()}
    assert {"GetServerInfo", "CancelFlightInfo", "CreatePreparedStatement"} <= types

    results = list(client.do_action(flight.Action("GetServerInfo", b"{}")))
    assert len(results) == 1
    info = json.loads(results[0].body.to_pybytes())
    assert info["name"] == "Quiver"
    assert info["data_root"].endswith(server.data.name)


def test_bad_actions_get_clear_errors(server):
    client = flight.FlightClient(server.url)
    # pyarrow raises Flight's UNIMPLEMENTED as NotImplementedError.
    with pytest.raises(NotImplementedError, match="unknown action 'Nope'"):
        list(client.do_action(flight.Action("Nope", b"")))
    # ... and INVALID_ARGUMENT as ArrowInvalid.
    with pytest.raises(pa.ArrowInvalid, match="invalid JSON body for action 'GetServerInfo'"):
        list(client.do_action(flight.Action("GetServerInfo", b"{not json")))
    # The server still answers.
    assert len(list(client.do_action(flight.Action("GetServerInfo", b"")))) == 1


def test_sigterm_stops_the_server_cleanly(server):
    client = flight.FlightClient(server.url)
    assert list(client.do_action(flight.Action("GetServerInfo", b"")))
    assert server.stop() == 0
    assert "stopped" in server.process.stdout.read()


def test_the_cli_prints_the_same_over_flight_as_embedded(start_server):
    from conftest import quiver_bin

    server = start_server("--auth", env={"QUIVER_TOKEN": "secret-token"})
    script = (
        "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v VECTOR(2)); "
        "INSERT INTO t VALUES (1, [1, 2]), (2, [3, 4]); "
        "SELECT id, v, l2_distance(v, [1, 2]) AS d FROM t ORDER BY d"
    )
    remote = subprocess.run(
        [quiver_bin(), "sql", "--connect", server.url, script],
        env={**os.environ, "QUIVER_TOKEN": "secret-token"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert remote.startswith("OK\n")
    assert "(2 rows)" in remote
    refused = subprocess.run(
        [quiver_bin(), "sql", "--connect", server.url, "SELECT 1"],
        env={k: v for k, v in os.environ.items() if k != "QUIVER_TOKEN"},
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("ERROR: authentication required")

    # The same statements run embedded on another data root print the same.
    embedded = subprocess.run(
        [quiver_bin(), "--data", str(server.data) + "-embedded", "sql", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert remote == embedded
