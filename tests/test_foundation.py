"""The package's foundation: the command, user-error handling and atomic writes."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys

import pytest

from fromzero import cli, files
from fromzero.errors import FromzeroError, InputError, MissingFileError


def test_help_lists_every_command_module():
    result = subprocess.run(
        [sys.executable, "-m", "fromzero", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: fromzero" in result.stdout
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in sub.choices:
        assert name in result.stdout


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def test_every_flag_has_help_and_no_empty_default():
    parsers = list(_all_parsers(cli.build_parser()))
    assert len(parsers) > 15
    for parser in parsers:
        text = parser.format_help()
        assert "default: None" not in text and "default: False" not in text, parser.prog
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):  # its choices carry the help
                assert action.help, f"{parser.prog}: {action.dest} has no help"


def test_version():
    result = subprocess.run(
        [sys.executable, "-m", "fromzero", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("fromzero ")


def test_user_error_is_one_line_exit_2(monkeypatch, capsys):
    def failing(_args):
        raise MissingFileError("no such file: corpus.txt [check the path]")

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=failing)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["error: no such file: corpus.txt [check the path]"]


def test_errors_are_also_builtin_errors():
    assert issubclass(InputError, ValueError) and issubclass(InputError, FromzeroError)
    assert issubclass(MissingFileError, FileNotFoundError)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    files.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_write_creates_parent_dirs(tmp_path):
    target = tmp_path / "a" / "b" / "c.txt"
    files.write_text(target, "héllo")
    assert target.read_text(encoding="utf-8") == "héllo"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        files.write_text(tmp_path / "a.txt", "text")
        files.write_json(tmp_path / "b.json", {"a": 1})
        with files.atomic_path(tmp_path / "c.bin") as tmp:
            tmp.write_bytes(b"\x00")
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json", "c.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_writing_where_a_file_stands_for_a_folder_is_one_clear_error(tmp_path):
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(InputError, match=r"cannot write .*taken/sub/x\.json: .*taken is a file, not a folder"):
        files.write_json(tmp_path / "taken" / "sub" / "x.json", {})
    with pytest.raises(InputError, match="it is a folder"):
        files.write_text(tmp_path, "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
