"""The command line itself: the data root from QUIVER_DATA, persistence across processes, and
the interactive shell fed from standard input."""

import os
import re
import signal
import subprocess

from conftest import quiver_bin


def run(args, data, stdin=None):
    return subprocess.run(
        [quiver_bin(), *args],
        env={**os.environ, "QUIVER_DATA": str(data)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_quiver_data_names_the_root_and_what_one_process_writes_the_next_reads(tmp_path):
    data = tmp_path / "root"
    created = run(
        ["sql", "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v VECTOR(2)); "
                "INSERT INTO t VALUES (1, [1, 2]), (2, [3, 4])"],
        data,
    )
    assert created.returncode == 0, created.stderr
    assert (data / "_catalog").is_dir()
    # Making a new root is said (a --data with a typo would otherwise look like an empty
    # database); opening it again is not.
    assert f"created a new data root at {data}" in created.stderr, created.stderr
    read = run(["sql", "SELECT id FROM t ORDER BY v <-> [3, 4] LIMIT 1"], data)
    assert read.returncode == 0, read.stderr
    assert "created a new data root" not in read.stderr, read.stderr
    assert read.stdout.splitlines()[3] == "| 2  |", read.stdout
    # A bad statement fails with a message naming the problem, and changes nothing.
    bad = run(["sql", "INSERT INTO t VALUES (3, [1, 2, 3])"], data)
    assert bad.returncode == 1
    assert "column 'v' is VECTOR(2) but got a vector of 3 dimensions" in bad.stderr
    count = run(["sql", "SELECT count(*) AS n FROM t"], data)
    assert count.stdout.splitlines()[3] == "| 2 |", count.stdout


def test_the_shell_runs_statements_from_standard_input(tmp_path):
    data = tmp_path / "root"
    shell = run(
        ["sql"],
        data,
        stdin="CREATE TABLE s (id BIGINT);\nINSERT INTO s VALUES (41), (42);\n"
              "SELECT max(id) AS top\nFROM s;\n",
    )
    assert shell.returncode == 0, shell.stderr
    assert "| top |" in shell.stdout and "| 42  |" in shell.stdout, shell.stdout


def test_the_loaded_index_budget_decides_whether_an_hnsw_index_is_searched_in_memory(tmp_path):
    data = tmp_path / "root"
    rows = ", ".join(f"({i}, [{i % 17}, {i % 5}, {i // 20}])" for i in range(400))
    created = run(
        ["sql", "CREATE TABLE t (id BIGINT NOT NULL PRIMARY KEY, v VECTOR(3)); "
                f"INSERT INTO t VALUES {rows}; "
                "CREATE INDEX ON t USING hnsw (v vector_l2_ops)"],
        data,
    )
    assert created.returncode == 0, created.stderr
    query = "SELECT id FROM t ORDER BY v <-> [3, 1, 7] LIMIT 1"

    def search(budget_mb=None):
        env = {} if budget_mb is None else {"QUIVER_LOADED_INDEX_MB": str(budget_mb)}
        result = subprocess.run(
            [quiver_bin(), "sql", f"{query}; EXPLAIN ANALYZE {query}"],
            env={**os.environ, "QUIVER_DATA": str(data), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    # The one row at [3, 1, 7] is 156 (156 % 17 == 3, 156 % 5 == 1, 156 // 20 == 7).
    loaded, unloaded = search(), search(budget_mb=0)
    assert "loaded_index_searches=1" in loaded and "direct_index_searches=1" in loaded, loaded
    assert "loaded_index_searches=0" in unloaded and "direct_index_searches=1" in unloaded, unloaded
    assert loaded.splitlines()[3] == unloaded.splitlines()[3] == "| 156 |", (loaded, unloaded)


def test_the_version_names_the_build_and_a_debug_server_warns(tmp_path):
    version = run(["--version"], tmp_path / "unused")
    assert version.returncode == 0, version.stderr
    line = version.stdout.strip()
    assert re.fullmatch(r"quiver \d+\.\d+\.\d+ \((release build|debug build, unoptimised)\)", line), line
    server = subprocess.Popen(
        [quiver_bin(), "--data", str(tmp_path / "root"), "serve", "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "listening on" in server.stdout.readline()
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    warned = "WARNING: this quiver is a debug build" in stderr
    assert warned == ("debug build" in line), stderr


def test_a_closed_output_ends_the_run_quietly(tmp_path):
    # `quiver sql ... | head -n 2`: the reader goes away while the result is being written.
    command = f"{quiver_bin()} sql 'SELECT value FROM generate_series(1, 200000)' | head -n 2"
    piped = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        env={**os.environ, "QUIVER_DATA": str(tmp_path / "root")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert len(piped.stdout.splitlines()) == 2
    assert "panicked" not in piped.stderr and "Broken pipe" not in piped.stderr, piped.stderr


def test_a_script_on_standard_input_stops_at_its_first_error(tmp_path):
    data = tmp_path / "root"
    script = run(
        ["sql"],
        data,
        stdin="CREATE TABLE s (id BIGINT);\nINSERT INTO s VALUES ('not a number');\n"
              "INSERT INTO s VALUES (1);\n",
    )
    assert script.returncode == 1, (script.stdout, script.stderr)
    assert "ERROR:" in script.stderr and "not a number" in script.stderr, script.stderr
    # No banner for a script, and nothing after the failed statement ran.
    assert "Quiver SQL shell" not in script.stdout, script.stdout
    count = run(["sql", "SELECT count(*) AS n FROM s"], data)
    assert count.stdout.splitlines()[3] == "| 0 |", count.stdout


def test_vectors_print_abbreviated_unless_asked_for_every_value(tmp_path):
    data = tmp_path / "root"
    values = ", ".join(str(i / 4) for i in range(384))
    created = run(
        ["sql", "CREATE TABLE e (id BIGINT, v VECTOR(384)); "
                f"INSERT INTO e VALUES (1, [{values}]), (2, NULL)"],
        data,
    )
    assert created.returncode == 0, created.stderr
    short = run(["sql", "SELECT id, v FROM e ORDER BY id"], data)
    assert short.returncode == 0, short.stderr
    assert "| [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, …] (384) |" in short.stdout, short.stdout
    assert max(len(line) for line in short.stdout.splitlines()) < 100, short.stdout
    three = run(["sql", "--vector-values", "3", "SELECT v FROM e WHERE id = 1"], data)
    assert "| [0.0, 0.25, 0.5, …] (384) |" in three.stdout, three.stdout
    whole = run(["sql", "--vector-values", "0", "SELECT v FROM e WHERE id = 1"], data)
    assert "95.75]" in whole.stdout and "…" not in whole.stdout, whole.stdout[:300]


def test_rows_past_the_cap_are_left_out_with_a_note(tmp_path):
    data = tmp_path / "root"
    capped = run(["sql", "--max-rows", "5", "SELECT value FROM generate_series(1, 20)"], data)
    assert capped.returncode == 0, capped.stderr
    assert "| 5     |" in capped.stdout and "| 6     |" not in capped.stdout, capped.stdout
    assert capped.stdout.rstrip().endswith("(20 rows, the first 5 shown; --max-rows 0 shows all)")
    # Piped, every row prints unless capped.
    piped = run(["sql", "SELECT value FROM generate_series(1, 1500)"], data)
    assert piped.stdout.rstrip().endswith("(1500 rows)"), piped.stdout[-200:]
    # On a terminal, the first 1000 print.
    leader, follower = os.openpty()
    process = subprocess.Popen(
        [quiver_bin(), "sql", "SELECT value FROM generate_series(1, 1500)"],
        env={**os.environ, "QUIVER_DATA": str(data)},
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    out = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        out.extend(chunk)
    os.close(leader)
    assert process.wait(timeout=120) == 0
    text = out.decode()
    assert "| 1000  |" in text and "| 1001  |" not in text, text[-300:]
    assert "(1500 rows, the first 1000 shown; --max-rows 0 shows all)" in text, text[-300:]


def test_a_script_file_runs_until_its_first_error(tmp_path):
    data = tmp_path / "root"
    script = tmp_path / "load.sql"
    script.write_text(
        "CREATE TABLE f (id BIGINT);\nINSERT INTO f VALUES (1), (2);\n"
        "INSERT INTO f VALUES ('x');\nINSERT INTO f VALUES (3);\n"
    )
    ran = run(["sql", "-f", str(script)], data)
    assert ran.returncode == 1, (ran.stdout, ran.stderr)
    assert "ERROR:" in ran.stderr, ran.stderr
    count = run(["sql", "SELECT count(*) AS n FROM f"], data)
    assert count.stdout.splitlines()[3] == "| 2 |", count.stdout
    missing = run(["sql", "-f", str(tmp_path / "nowhere.sql")], data)
    assert missing.returncode == 1 and "cannot read" in missing.stderr, missing.stderr


def test_a_folder_of_other_files_is_not_made_a_data_root(tmp_path):
    # A LanceDB folder given as the data root by mistake: refused, and left as it was.
    lancedb = tmp_path / "lancedb"
    (lancedb / "docs.lance" / "_versions").mkdir(parents=True)
    (lancedb / "docs.lance" / "_versions" / "1.manifest").write_bytes(b"lance")
    refused = run(["sql", "SHOW TABLES"], lancedb)
    assert refused.returncode == 1, refused.stdout
    assert "holds files but no Quiver catalog" in refused.stderr, refused.stderr
    assert "docs.lance/_versions/1.manifest" in refused.stderr, refused.stderr
    assert not (lancedb / "_catalog").exists()
    # A new or empty directory becomes a data root.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(["sql", "SHOW TABLES"], empty).returncode == 0
    assert run(["sql", "SHOW TABLES"], tmp_path / "new").returncode == 0
