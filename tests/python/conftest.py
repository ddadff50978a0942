"""Fixtures for Quiver's client tests: each test gets its own `quiver serve` process on a free
loopback port over a fresh data root, and stops it with SIGTERM afterwards."""

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

LISTENING = re.compile(r"listening on (grpc(?:\+tls)?://[0-9.]+:\d+)")


class Server:
    """A running `quiver serve`."""

    def __init__(self, process: subprocess.Popen, url: str, data: Path):
        self.process = process
        self.url = url
        self.data = data

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
