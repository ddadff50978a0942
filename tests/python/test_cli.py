"""The command line itself: the data root from QUIVER_DATA, persistence across processes, and
the interactive shell fed from standard input."""

import os
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
    read = run(["sql", "SELECT id FROM t ORDER BY v <-> [3, 4] LIMIT 1"], data)
    assert read.returncode == 0, read.stderr
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
