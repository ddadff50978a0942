"""Custom actions through pyarrow.flight, and a server that shuts down cleanly on SIGTERM."""

import json

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
