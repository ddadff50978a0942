"""Sessions over Flight SQL, through the clients users run: ADBC with its cookie middleware, and
pyarrow.flight with a cookie middleware of its own. Settings last across statements on one
connection, stay on that connection, and are dropped for clients that do not keep the cookie."""

import json

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow.flight as flight
import pytest
from conftest import flight_sql_command, proto_bytes

COOKIES = {"adbc.flight.sql.rpc.with_cookie_middleware": "true"}
OPTION = "adbc.flight.sql.session.option."


def show(conn, name: str) -> str:
    with conn.cursor() as cur:
        cur.execute(f"SHOW {name}")
        return cur.fetchall()[0][1]


@pytest.fixture
def default_ef(server) -> str:
    with flight_sql.connect(server.url) as conn:
        return show(conn, "quiver.ef")


def test_adbc_keeps_set_across_statements_per_connection(server, default_ef):
    with flight_sql.connect(server.url, db_kwargs=COOKIES) as first, flight_sql.connect(
        server.url, db_kwargs=COOKIES
    ) as second:
        with first.cursor() as cur:
            cur.execute("SET quiver.ef = 64")
        assert show(first, "quiver.ef") == "64"
        assert show(second, "quiver.ef") == default_ef
        with second.cursor() as cur:
            cur.execute("SET quiver.ef = 16")
        assert show(first, "quiver.ef") == "64"
        assert show(second, "quiver.ef") == "16"


def test_adbc_without_cookies_behaves_as_before(server, default_ef):
    with flight_sql.connect(server.url) as conn:
        with conn.cursor() as cur:
            cur.execute("SET quiver.ef = 64")
        assert show(conn, "quiver.ef") == default_ef


def test_adbc_session_options_and_current_schema(server):
    with flight_sql.connect(server.url, db_kwargs=COOKIES) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE shop")
            cur.execute("CREATE TABLE shop.items (id BIGINT, name VARCHAR)")
            cur.execute("INSERT INTO shop.items VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        conn.adbc_connection.set_options(**{OPTION + "quiver.ef": "48"})
        conn.adbc_current_db_schema = "shop"
        assert conn.adbc_current_db_schema == "shop"
        assert conn.adbc_current_catalog == "quiver"
        options = json.loads(conn.adbc_connection.get_option("adbc.flight.sql.session.options"))
        assert options["quiver.ef"] == 48
        assert options["schema"] == "shop"
        assert show(conn, "quiver.ef") == "48"
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM items")
            assert cur.fetchall() == [(3,)]
        with pytest.raises(Exception, match="quiver.nope"):
            conn.adbc_connection.set_options(**{OPTION + "quiver.nope": "1"})


class CookieMiddleware(flight.ClientMiddleware):
    def __init__(self, jar: dict):
        self.jar = jar

    def received_headers(self, headers):
        for value in headers.get("set-cookie", []):
            name, _, rest = value.partition("=")
            self.jar[name] = rest.split(";")[0]

    def sending_headers(self):
        if not self.jar:
            return {}
        return {"cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items() if v)}


class CookieFactory(flight.ClientMiddlewareFactory):
    def __init__(self):
        self.jar = {}

    def start_call(self, info):
        return CookieMiddleware(self.jar)


def pyarrow_statement(client: flight.FlightClient, sql: str):
    """Runs `sql` through Flight SQL's CommandStatementQuery with pyarrow alone."""
    command = flight_sql_command("CommandStatementQuery", proto_bytes(1, sql))
    info = client.get_flight_info(flight.FlightDescriptor.for_command(command))
    return client.do_get(info.endpoints[0].ticket).read_all()


def test_pyarrow_with_a_cookie_middleware_keeps_its_session(server, default_ef):
    factory = CookieFactory()
    client = flight.FlightClient(server.url, middleware=[factory])
    pyarrow_statement(client, "SET quiver.ef = 24")
    assert factory.jar.get("arrow_flight_session_id"), factory.jar
    table = pyarrow_statement(client, "SHOW quiver.ef")
    assert table.column("value").to_pylist() == ["24"]
    # CloseSession clears the cookie; the next statement runs on a fresh session.
    list(client.do_action(flight.Action("CloseSession", b"")))
    assert not factory.jar.get("arrow_flight_session_id")
    table = pyarrow_statement(client, "SHOW quiver.ef")
    assert table.column("value").to_pylist() == [default_ef]
    client.close()
