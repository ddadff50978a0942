"""`kill -9` in the middle of work loses nothing acknowledged and leaves nothing half-done.

What is guaranteed (docs/reliability.md, Writes; docs/snapshots.md, Lifecycle and crash safety;
docs/jobs.md, Restore and Restarts), and checked here against the `quiver serve` binary:

- A write is one Lance transaction: after a crash a collection holds every acknowledged write and,
  of the one statement in flight, all of its rows or none.
- An interrupted `CREATE SNAPSHOT` leaves no visible snapshot: a snapshot is either absent or
  listed and readable in full, with the rows its collection had. An absent name can be created
  again (once `VACUUM` has cleared the record of an interrupted create, which the error names).
- An interrupted restore leaves no half-made target: the target is absent or holds exactly the
  snapshot's rows. An acknowledged restore's job is not lost, and a job left PENDING is resumed
  when a server starts.
- `VACUUM` (here with `retention_seconds = 0`, so old versions go) never removes what a snapshot,
  a restored collection or the live collection reads, even when it is killed half-way.
- An `UPDATE` of every row leaves every row with the old value or every row with the new one.

`test_kill_9_during_work_loses_nothing` runs rounds over one data root: a server starts an
operation from a thread, is killed with SIGKILL after a random delay, and a new server on the same
root is checked. Delays come from a seeded `random.Random` (QUIVER_CRASH_SEED) and range from 0
to 1.25 times the operation's undisturbed duration, measured first (for ingest, 3 statements'),
so kills land before, during and after it; each round reports where its kill landed, as the next
server shows it. Rounds per operation: QUIVER_CRASH_ROUNDS (default 4). After the rounds, every
snapshot SHOW SNAPSHOTS lists, every restored collection and the live collection read in full.

`test_a_restore_killed_while_running_is_taken_over_after_the_lease` checks the rest of the
restart promise — a job whose runner died is taken over once its lease has expired and ends
as if it had never stopped — on servers started with a short lease (`--job-lease`).
"""

import gc
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import grpc_status, query, rows

# A cursor whose server was killed mid-call fails to close a second time when it is garbage
# collected (an ADBC driver manager quirk, after the kill; nothing the server does).
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function Cursor.__del__:pytest.PytestUnraisableExceptionWarning"
)

ROUNDS = int(os.environ.get("QUIVER_CRASH_ROUNDS", "4"))
SEED = int(os.environ.get("QUIVER_CRASH_SEED", "1337"))
DIM = 8
BASE_ROWS = 20000
BATCH = 1000
# Statements an ingest round sends: more than any kill lets through.
INGEST_STATEMENTS = 50
# Each statement sees the newest catalog; no garbage collection but the rounds' own.
SERVE_ARGS = ("--catalog-refresh-interval", "0", "--gc-interval", "0")
# The job lease of the takeover test's servers: long enough that a kill and a restart fit in it.
LEASE_SECONDS = 5
# Old versions go at once; unreferenced files only after a grace far longer than any one write
# here, so a garbage collection taken over after a kill never deletes a write in flight.
VACUUM = "VACUUM WITH (retention_seconds = 0, grace_seconds = 10)"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
OPERATIONS = ["ingest", "snapshot", "restore", "vacuum", "update"]


def vector(i: int) -> list[float]:
    """Row `i`'s vector: small integers, exact in f32, different for every row."""
    return [float(i % 1000), float(i // 1000), 1.0, 2.0, 3.0, 4.0, 5.0, float(i % 7)]


def batch(ids, label: str) -> pa.Table:
    ids = list(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "label": pa.array([label] * len(ids)),
            "v": pa.array([vector(i) for i in ids], pa.list_(pa.float32(), DIM)),
        }
    )


def insert_statement(ids, label: str) -> str:
    values = ", ".join(f"({i}, '{label}', {vector(i)})" for i in ids)
    return f"INSERT INTO t VALUES {values}"


@dataclass(frozen=True)
class Content:
    """What a collection, snapshot or restored collection must hold: these ids, each with its
    vector and this label."""

    ids: frozenset
    label: str


def describe_difference(got: list, expected: frozenset) -> str:
    got_set = set(got)
    missing, extra = sorted(expected - got_set), sorted(got_set - expected)
    return (
        f"{len(got)} rows, expected {len(expected)}; missing {len(missing)} {missing[:5]}, "
        f"unexpected {len(extra)} {extra[:5]}, duplicates {len(got) - len(got_set)}"
    )


def assert_holds(url: str, relation: str, content: Content, rng: random.Random):
    """`relation` reads in full — every row, every column — and holds exactly `content`; a k-NN
    query over it finds a row by its vector."""
    table = query(url, f"SELECT id, label, v FROM {relation} ORDER BY id")
    ids = table.column("id").to_pylist()
    assert ids == sorted(content.ids), f"{relation}: {describe_difference(ids, content.ids)}"
    labels = set(table.column("label").to_pylist())
    assert labels <= {content.label}, f"{relation}: labels {labels}, expected {content.label!r}"
    vectors = table.column("v").to_pylist()
    assert vectors == [vector(i) for i in ids], f"{relation}: vectors differ from the rows written"
    if ids:
        probe = rng.choice(ids)
        nearest = rows(url, f"SELECT id FROM {relation} ORDER BY l2_distance(v, {vector(probe)}) LIMIT 1")
        assert nearest == [(probe,)], f"{relation}: k-NN for row {probe}'s vector found {nearest}"


@dataclass
class Progress:
    """What an operation's thread got acknowledged before the kill."""

    done: bool = False
    acked: list = field(default_factory=list)
    in_flight: list = field(default_factory=list)
    job_id: int | None = None
    # How the kill ended the thread's call, as "<gRPC status>: <message>" (a string: an exception
    # would keep the dead call's cursor alive through its traceback).
    error: str | None = None


class Rounds:
    """The data root, the server currently serving it, and what it must hold."""

    def __init__(self, start_server, data, rng: random.Random):
        self.start_server = start_server
        self.data = data
        self.rng = rng
        self.server = start_server(*SERVE_ARGS, data=data)
        self.live = Content(frozenset(), "l0")
        self.next_id = 0
        self.snapshots: dict[str, Content] = {}
        self.restored: dict[str, Content] = {}
        # Every restore started (target -> the snapshot's content), finished or not.
        self.restores: dict[str, Content] = {}
        self.unfinished_jobs: set[int] = set()

    @property
    def url(self) -> str:
        return self.server.url

    def take_ids(self, n: int) -> range:
        ids = range(self.next_id, self.next_id + n)
        self.next_id += n
        return ids

    def kill_during(self, work: Callable[[str, Progress], None], delay: float) -> Progress:
        """Runs `work` against the server from a thread, kills the server with SIGKILL after
        `delay` seconds, and starts a new server on the same root."""
        progress = Progress()
        url = self.url

        def run():
            try:
                work(url, progress)
            except Exception as e:  # the kill breaks the call: expected
                # The first failure, not one from closing the dead call's cursor after it.
                while e.__context__ is not None:
                    e = e.__context__
                progress.error = f"{grpc_status(e)}: {e}"

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        time.sleep(delay)
        self.server.process.kill()
        self.server.process.wait()
        thread.join(timeout=60)
        assert not thread.is_alive(), "a client call still hangs 60 s after its server was killed"
        gc.collect()  # here, where the ADBC quirk above is filtered
        assert progress.error is None or progress.error.startswith("UNAVAILABLE"), (
            f"the operation failed other than by the kill: {progress.error}"
        )
        self.server = self.start_server(*SERVE_ARGS, data=self.data)
        return progress

    # --- operations: each a function of (url, progress) run in a thread ---

    def ingest_work(self, label: str, first_id: int, statements: int, bulk_first: bool):
        """Writes batches of BATCH rows, alternating bulk ingest and multi-row INSERT."""

        def work(url: str, progress: Progress):
            with flight_sql.connect(url) as conn, conn.cursor() as cur:
                for n in range(statements):
                    ids = list(range(first_id + n * BATCH, first_id + (n + 1) * BATCH))
                    progress.in_flight = ids
                    if (n % 2 == 0) == bulk_first:
                        assert cur.adbc_ingest("t", batch(ids, label), mode="append") == BATCH
                    else:
                        cur.execute(insert_statement(ids, label))
                        assert cur.fetchall() == [(BATCH,)]
                    progress.acked.extend(ids)
                    progress.in_flight = []
            progress.done = True

        return work

    @staticmethod
    def statement_work(sql: str):
        def work(url: str, progress: Progress):
            query(url, sql)
            progress.done = True

        return work

    @staticmethod
    def restore_work(snapshot: str, target: str, mode: str):
        """RESTORE, then follows its job to the end."""

        def work(url: str, progress: Progress):
            result = query(url, f"RESTORE SNAPSHOT {snapshot} ON t TO {target} WITH (mode = '{mode}')")
            progress.job_id = result.column("job_id")[0].as_py()
            while True:
                [(state,)] = rows(url, f"SELECT state FROM quiver.jobs WHERE id = {progress.job_id}")
                if state in TERMINAL:
                    break
                time.sleep(0.01)
            assert state == "SUCCEEDED", state
            progress.done = True

        return work

    # --- what the restarted server must show ---

    def collections(self) -> set[str]:
        return {name for (name,) in rows(self.url, "SELECT name FROM quiver.collections")}

    def listed_snapshots(self) -> dict[str, int]:
        table = query(self.url, "SHOW SNAPSHOTS ON t")
        return dict(zip(table.column("name").to_pylist(), table.column("rows").to_pylist()))

    def jobs(self) -> dict[int, tuple[str, str]]:
        """Job id -> (target, state)."""
        return {
            job_id: (target, state)
            for job_id, target, state in rows(self.url, "SELECT id, target, state FROM quiver.jobs")
        }

    def check_everything(self):
        """The live collection, every snapshot and every restored collection read in full; the
        snapshots listed are exactly the ones created; a restore target is absent or complete
        (a restore resumed after a kill may have finished since), and once there stays there."""
        assert_holds(self.url, "t", self.live, self.rng)
        listed = self.listed_snapshots()
        assert set(listed) == set(self.snapshots), f"listed {sorted(listed)}, created {sorted(self.snapshots)}"
        for name, content in self.snapshots.items():
            assert listed[name] == len(content.ids), f"snapshot {name}: rows {listed[name]}"
            assert_holds(self.url, f"snapshot('t', '{name}')", content, self.rng)
        present = self.collections()
        for target, content in self.restores.items():
            if target in present:
                assert_holds(self.url, target, content, self.rng)
                self.restored[target] = content
            else:
                assert target not in self.restored, f"restored collection {target} vanished"

    def wait_for_pending_jobs(self, timeout: float = 20.0):
        """Jobs left PENDING by a kill are resumed when a server starts: none stays PENDING."""
        deadline = time.time() + timeout
        while True:
            pending = {i: j for i, j in self.jobs().items() if j[1] == "PENDING"}
            if not pending:
                return
            assert time.time() < deadline, f"jobs still PENDING {timeout} s after a start: {pending}"
            time.sleep(0.1)

    # --- the rounds: each kills the server during one operation, checks what the next server
    # shows, and says where the kill landed (one of LANDINGS) ---

    def ingest_round(self, delay: float) -> str:
        first, label = self.next_id, self.live.label
        self.take_ids(INGEST_STATEMENTS * BATCH)
        work = self.ingest_work(label, first, INGEST_STATEMENTS, bulk_first=self.rng.random() < 0.5)
        progress = self.kill_during(work, delay)
        got = [i for (i,) in rows(self.url, "SELECT id FROM t")]
        acked = self.live.ids | set(progress.acked)
        with_in_flight = acked | set(progress.in_flight)
        assert len(got) == len(set(got)) and set(got) in (acked, with_in_flight), (
            f"{len(progress.acked)} rows acknowledged, {len(progress.in_flight)} in flight: rows "
            f"lost or part of a statement applied: {describe_difference(got, acked)}"
        )
        self.live = Content(frozenset(got), label)
        assert_holds(self.url, "t", self.live, self.rng)
        return APPLIED if progress.in_flight and set(got) == with_in_flight else BEFORE

    def snapshot_round(self, delay: float, name: str) -> str:
        progress = self.kill_during(self.statement_work(f"CREATE SNAPSHOT {name} ON t"), delay)
        landed = AFTER_REPLY if progress.done else APPLIED
        listed = self.listed_snapshots()
        if name in listed:
            assert listed[name] == len(self.live.ids), f"snapshot {name} lists {listed[name]} rows"
        else:
            assert not progress.done, f"the acknowledged snapshot {name} is not listed"
            landed = BEFORE
            with pytest.raises(Exception, match="(?i)snapshot"):
                query(self.url, f"SELECT count(*) FROM snapshot('t', '{name}')")
            try:
                query(self.url, f"CREATE SNAPSHOT {name} ON t")
            except Exception as e:
                # docs/snapshots.md: the record of an interrupted create holds the name until
                # VACUUM clears it, and the error says so.
                assert "being created" in str(e) and "VACUUM" in str(e), str(e)
                landed = RUNNING
                query(self.url, "VACUUM t WITH (grace_seconds = 0)")
                query(self.url, f"CREATE SNAPSHOT {name} ON t")
        self.snapshots[name] = self.live
        assert_holds(self.url, f"snapshot('t', '{name}')", self.live, self.rng)
        return landed

    def restore_round(self, delay: float, target: str) -> str:
        snapshot = self.snapshots["base"]
        mode = self.rng.choice(["copy", "zero_copy"])
        progress = self.kill_during(self.restore_work("base", target, mode), delay)
        self.restores[target] = snapshot
        self.wait_for_pending_jobs()
        jobs = self.jobs()
        if progress.job_id is not None:
            assert progress.job_id in jobs, f"the acknowledged restore job {progress.job_id} is not listed"
        # A restore job's target reads "default.t@base -> default.<target>".
        mine = {i: state for i, (t, state) in jobs.items() if t.endswith(f" -> default.{target}")}
        assert len(mine) <= 1, f"one RESTORE made jobs {mine}"
        exists = target in self.collections()
        if exists:
            assert_holds(self.url, target, snapshot, self.rng)
            self.restored[target] = snapshot
        else:
            assert not progress.done, f"the finished restore to {target} is gone"
        for i, state in mine.items():
            if state == "SUCCEEDED":
                assert exists, f"restore job {i} SUCCEEDED but {target} does not exist"
            if state in ("FAILED", "CANCELLED"):
                assert not exists, f"restore job {i} {state} but left {target}"
            if state not in TERMINAL:
                # Its runner died with the killed server: taken over once its lease expires.
                self.unfinished_jobs.add(i)
        if progress.done:
            return AFTER_REPLY
        if exists:
            return APPLIED
        return RUNNING if mine else BEFORE

    def update_round(self, delay: float, new: str) -> str:
        old, n = self.live.label, len(self.live.ids)
        progress = self.kill_during(self.statement_work(f"UPDATE t SET label = '{new}'"), delay)
        labels = rows(self.url, "SELECT label, count(*) FROM t GROUP BY label")
        assert labels in ([(old, n)], [(new, n)]), f"after UPDATE from {old!r} to {new!r}: {labels}"
        if progress.done:
            assert labels == [(new, n)], "an acknowledged UPDATE was lost"
        self.live = Content(self.live.ids, labels[0][0])
        assert_holds(self.url, "t", self.live, self.rng)
        return AFTER_REPLY if progress.done else APPLIED if labels[0][0] == new else BEFORE

    def vacuum_round(self, delay: float) -> str:
        before = set(self.jobs())
        progress = self.kill_during(self.statement_work(VACUUM), delay)
        self.check_everything()
        states = {state for i, (_, state) in self.jobs().items() if i not in before}
        if progress.done:
            return AFTER_REPLY
        if "SUCCEEDED" in states:
            return APPLIED
        return RUNNING if states else BEFORE


# Where a kill landed, as the next server shows it.
BEFORE = "before the operation took effect"
RUNNING = "while it ran (left for recovery)"
APPLIED = "after it took effect, before the reply"
AFTER_REPLY = "after the reply"
LANDINGS = [BEFORE, RUNNING, APPLIED, AFTER_REPLY]


def get_job(url: str, job_id: int) -> dict:
    """The job record, with its owner and heartbeat (the GetJob action)."""
    [result] = flight.FlightClient(url).do_action(flight.Action("GetJob", json.dumps({"job_id": job_id}).encode()))
    return json.loads(result.body.to_pybytes())


def heartbeat(job: dict) -> float:
    """The job's last heartbeat, as a POSIX time."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", job["heartbeat_at"]).replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


def measure(work: Callable[[str, Progress], None], url: str) -> float:
    start = time.perf_counter()
    progress = Progress()
    work(url, progress)
    assert progress.done
    return time.perf_counter() - start


def test_kill_9_during_work_loses_nothing(start_server, tmp_path, figures):
    rng = random.Random(SEED)
    state = Rounds(start_server, tmp_path / "root", rng)
    started = 0
    passed = {op: 0 for op in OPERATIONS}
    landings = {landing: 0 for landing in LANDINGS}

    def record():
        figures["kill -9"] = (
            f"kill -9 rounds: {started}, passed {sum(passed.values())} ("
            + ", ".join(f"{op} {passed[op]}" for op in OPERATIONS)
            + "); killed "
            + ", ".join(f"{landing} {n}" for landing, n in landings.items())
            + f"; restore jobs left RUNNING for their lease {len(state.unfinished_jobs)}; seed {SEED}"
        )

    schedule = [op for _ in range(ROUNDS) for op in rng.sample(OPERATIONS, len(OPERATIONS))]
    try:
        # Set up, and time each operation undisturbed.
        query(state.url, f"CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, label VARCHAR, v FLOAT[{DIM}])")
        with flight_sql.connect(state.url) as conn, conn.cursor() as cur:
            cur.adbc_ingest("t", batch(state.take_ids(BASE_ROWS), "l0"), mode="append")
        state.live = Content(frozenset(range(BASE_ROWS)), "l0")
        durations = {}
        ids = state.take_ids(2 * BATCH)
        durations["ingest"] = measure(state.ingest_work("l0", ids[0], 2, True), state.url) / 2
        state.live = Content(state.live.ids | set(ids), "l0")
        durations["snapshot"] = measure(state.statement_work("CREATE SNAPSHOT base ON t"), state.url)
        state.snapshots["base"] = state.live
        durations["restore"] = measure(state.restore_work("base", "warm", "copy"), state.url)
        state.restores["warm"] = state.restored["warm"] = state.live
        durations["update"] = measure(state.statement_work("UPDATE t SET label = 'l1'"), state.url)
        state.live = Content(state.live.ids, "l1")
        durations["vacuum"] = measure(state.statement_work(VACUUM), state.url)
        state.check_everything()

        for number, op in enumerate(schedule):
            # Ingest kills land among its first few statements; the others' anywhere from
            # before the request to a while after the reply.
            delay = rng.uniform(0, (3.0 if op == "ingest" else 1.25) * durations[op])
            started += 1
            try:
                if op == "ingest":
                    landed = state.ingest_round(delay)
                elif op == "snapshot":
                    landed = state.snapshot_round(delay, f"s{number}")
                elif op == "restore":
                    landed = state.restore_round(delay, f"r{number}")
                elif op == "update":
                    landed = state.update_round(delay, f"l{number + 2}")
                else:
                    landed = state.vacuum_round(delay)
            except AssertionError as e:
                raise AssertionError(f"round {number} ({op}, killed after {delay * 1000:.0f} ms): {e}") from e
            landings[landed] += 1
            passed[op] += 1

        # After the rounds: nothing stays PENDING, and everything reads in full.
        state.wait_for_pending_jobs()
        state.check_everything()
    finally:
        record()


def test_a_restore_killed_while_running_is_taken_over_after_the_lease(start_server, tmp_path, figures):
    rng = random.Random(SEED)
    data = tmp_path / "root"
    serve_args = (*SERVE_ARGS, "--job-lease", f"{LEASE_SECONDS}s")
    server = start_server(*serve_args, data=data)
    query(server.url, f"CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, label VARCHAR, v FLOAT[{DIM}])")
    # Many small files, so that a copy restore runs long enough to be caught RUNNING.
    with flight_sql.connect(server.url) as conn, conn.cursor() as cur:
        for n in range(60):
            cur.adbc_ingest("t", batch(range(n * 50, (n + 1) * 50), "l0"), mode="append")
    content = Content(frozenset(range(60 * 50)), "l0")
    query(server.url, "CREATE SNAPSHOT base ON t")

    # Kill the server a few milliseconds into a restore, until a kill lands while it runs: the
    # job is then RUNNING with the dead server's last heartbeat (a job left PENDING is resumed
    # by the next server at once, under a fresh heartbeat).
    for attempt in range(40):
        target = f"r{attempt}"
        [job_id] = query(server.url, f"RESTORE SNAPSHOT base ON t TO {target}").column("job_id").to_pylist()
        time.sleep(rng.uniform(0, 0.05))
        server.process.kill()
        server.process.wait()
        killed_at = time.time()
        server = start_server(*serve_args, data=data)
        job = get_job(server.url, job_id)
        if target in {n for (n,) in rows(server.url, "SELECT name FROM quiver.collections")}:
            assert_holds(server.url, target, content, rng)
        if job["state"] == "RUNNING" and heartbeat(job) < killed_at:
            break
    else:
        pytest.fail("no kill landed while a restore was running")

    # The lease has not expired: the job stays RUNNING, its runner dead, not yet taken over.
    assert get_job(server.url, job_id)["state"] == "RUNNING"
    # Once the lease has expired, a running server takes it over within half a lease.
    deadline = killed_at + 2 * LEASE_SECONDS + 30
    while (state := get_job(server.url, job_id)["state"]) not in TERMINAL:
        assert time.time() < deadline, f"job {job_id} still {state} after its lease expired"
        time.sleep(0.2)
    assert state == "SUCCEEDED", get_job(server.url, job_id)
    assert_holds(server.url, target, content, rng)
    figures["lease"] = (
        f"restore killed while RUNNING: taken over after the lease, SUCCEEDED "
        f"{time.time() - killed_at:.0f} s after the kill, target complete"
    )
