"""``xvactor worklist add/list/remove`` through ``xvactor.cli_worklist`` (parse + run).

Including while a node runs on the same data directory, and while another connection holds
a read transaction or (briefly) the write lock.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.unit.test_worklist_helpers import make_item, write_wl
from xvactor import cli_worklist
from xvactor.actors.catalog import CATALOG_FILE
from xvactor.testing.node import node_in_thread, test_config


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="xvactor")
    verbs = parser.add_subparsers(dest="verb", required=True)
    cli_worklist.add_parser(verbs)
    return cli_worklist.run(parser.parse_args(["worklist", *argv]))


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    wl = write_wl(make_item(1, patient_name="Müller^Jürgen"), folder / "one.wl")
    js = folder / "two.json"
    js.write_text(json.dumps([make_item(2).to_json_dict(), make_item(3).to_json_dict()]))
    return [wl, js]


def test_add_list_remove(
    tmp_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    assert run("add", "--data-dir", data, *map(str, files)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"1\t{files[0]}", f"2\t{files[1]}", f"3\t{files[1]}"]

    assert run("list", "--data-dir", data) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "START", "MODALITY"]
    assert len(table) == 4
    assert "Müller^Jürgen" in "\n".join(table)

    assert run("list", "--json", "--data-dir", data) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["item_id"] for entry in listed] == [1, 2, 3]
    assert listed[0]["patient_name"] == "Müller^Jürgen"
    assert listed[0]["scheduled_procedure_step_id"] == "SPS0001"

    assert run("remove", "--data-dir", data, "2") == 0
    assert run("list", "--json", "--data-dir", data) == 0
    assert [entry["item_id"] for entry in json.loads(capsys.readouterr().out)] == [1, 3]


def test_a_directory_of_files(
    tmp_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    (files[0].parent / "lockfile").touch()  # as in a wlmscpfs directory: not read
    assert run("add", "--data-dir", str(tmp_path / "d"), str(files[0].parent)) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_config_file_names_the_data_dir(
    tmp_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "from-config"
    config = tmp_path / "node.toml"
    config.write_text(f'data_dir = "{data}"\n')
    assert run("add", "--config", str(config), str(files[0])) == 0
    assert (data / CATALOG_FILE).is_file()
    assert run("list", "--json", "--config", str(config)) == 0
    capsys.readouterr()
    other = tmp_path / "override"
    assert run("add", "--config", str(config), "--data-dir", str(other), str(files[0])) == 0
    assert (other / CATALOG_FILE).is_file()


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.splitlines()
    assert err, "no message on stderr"
    assert all(line.startswith("xvactor worklist: ") for line in err)
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_bad_files_add_nothing(
    tmp_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.wl"
    bad.write_text("not dicom")
    incomplete = write_wl(make_item(9, modality=""), tmp_path / "incomplete.wl")
    data = tmp_path / "data"
    assert run("add", "--data-dir", str(data), str(files[0]), str(bad), str(incomplete)) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert f"{bad}: not a DICOM file" in err[0]
    assert f"{incomplete}: Modality is missing or empty (nothing added)" in err[1]
    assert not data.exists()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["list"], 1, "no catalog in this data directory"),
        (["remove", "1"], 1, "no catalog in this data directory"),
        (["remove", "abc"], 2, "'abc' is not an item id"),
        (["add", "{missing}"], 1, "cannot read"),
        (["add", "{empty_dir}"], 1, "no .wl or .json files in"),
    ],
)
def test_failures_are_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    (tmp_path / "empty").mkdir()
    names = {"missing": str(tmp_path / "missing.wl"), "empty_dir": str(tmp_path / "empty")}
    argv = [arg.format(**names) for arg in argv]
    assert run(*argv, "--data-dir", str(tmp_path / "data")) == code
    assert message in _one_error_line(capsys)


def test_removing_an_unknown_id_fails(
    tmp_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    run("add", "--data-dir", data, str(files[0]))
    assert run("remove", "--data-dir", data, "1", "7") == 1
    assert "no item with id 7" in _one_error_line(capsys)


def test_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("list", "--config", str(tmp_path / "none.toml")) == 2
    assert "config error" in _one_error_line(capsys)
    broken = tmp_path / "broken.toml"
    broken.write_text("data_dir = [")
    assert run("list", "--config", str(broken)) == 2
    assert "not valid TOML" in _one_error_line(capsys)


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as caught:
        run("add")
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        run("frobnicate")
    assert caught.value.code == 2


def test_while_the_node_runs(
    tmp_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with node_in_thread(test_config(tmp_path / "node")) as node:
        data = str(node.data_dir)
        assert run("add", "--data-dir", data, str(files[0])) == 0
        # A reader in the middle of a transaction does not hold writers up (WAL).
        reader = sqlite3.connect(node.data_dir / CATALOG_FILE, isolation_level=None)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM worklist_items").fetchone() == (1,)
        started = time.monotonic()
        assert run("add", "--data-dir", data, str(files[1])) == 0
        assert run("remove", "--data-dir", data, "1") == 0
        assert time.monotonic() - started < 5.0
        # Its snapshot still shows one item; the node's catalog is untouched.
        assert reader.execute("SELECT count(*) FROM worklist_items").fetchone() == (1,)
        reader.execute("COMMIT")
        reader.close()
        assert node.catalog_rows("SELECT count(*) FROM worklist_items") == [(2,)]
        assert node.catalog_rows("SELECT count(*) FROM instances") == [(0,)]
        capsys.readouterr()
        assert run("list", "--json", "--data-dir", data) == 0
        assert [e["item_id"] for e in json.loads(capsys.readouterr().out)] == [2, 3]


def test_waits_for_a_writer_holding_the_lock(
    tmp_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert run("add", "--data-dir", str(data), str(files[0])) == 0
    writer = sqlite3.connect(data / CATALOG_FILE, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        time.sleep(0.3)
        writer.execute("COMMIT")
        released.set()

    thread = threading.Thread(target=release)
    thread.start()
    try:
        assert run("add", "--data-dir", str(data), str(files[1])) == 0
        assert released.is_set()  # it waited for the lock rather than failing
    finally:
        thread.join(timeout=10)
        writer.close()
    assert "3\t" in capsys.readouterr().out
