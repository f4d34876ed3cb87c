"""The astromodal command: the built-in plugin's commands, plugin isolation and one-line errors."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import astromodal_core
from astromodal_core import ConfigError, DataError, hookimpl, registry
from astromodal_core.cli import cli, main

BUILTIN = {
    "name": "astromodal-core",
    "version": astromodal_core.__version__,
    "builtin": True,
    "hooks": ["astromodal_register_commands"],
    "status": "ok",
    "registered": {"modalities": [], "codecs": [], "token_keys": [], "tokenizers": []},
}


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``astromodal ARGS`` in-process; returns (exit status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, *named: str) -> str:
    """A non-zero exit, one stderr line ``Error: ...`` naming every string in ``named``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    for what in named:
        assert what in lines[0], (what, lines[0])
    return lines[0]


@pytest.fixture
def command_plugin() -> Any:
    """``register(name, fn)``: an in-process plugin whose command ``name`` runs ``fn``."""
    added: list[str] = []

    def register(name: str, fn: Callable[[], Any]) -> None:
        class P:
            @hookimpl
            def astromodal_register_commands(self, cli: Any) -> None:
                @cli.command(name)
                def _command() -> None:
                    fn()

        astromodal_core.register_plugin(P(), name=f"plugin-{name}")
        added.append(f"plugin-{name}")

    yield register
    for name in added:
        astromodal_core.unregister(name)


# the built-in plugin's commands ---------------------------------------------------------------
def test_plugins_json_exact(toy_plugin: Any) -> None:
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        BUILTIN,
        {
            "name": "toy",
            "version": "",
            "builtin": False,
            "hooks": [
                "astromodal_register_codecs",
                "astromodal_register_modalities",
                "astromodal_register_token_keys",
            ],
            "status": "ok",
            "registered": {
                "modalities": ["ToyValue"],
                "codecs": ["ToyCodec"],
                "token_keys": ["tok_toy"],
                "tokenizers": [],
            },
        },
    ]


def test_core_commands_come_from_the_builtin_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("plugins", "keys", "modalities", "tokenizers", "encode"):
        assert f"  {command} " in result.output
    monkeypatch.setattr(registry, "BUILTIN_PLUGINS", {})  # no built-in plugin: no command at all
    registry.reset()
    assert CliRunner().invoke(cli, ["keys"]).exit_code == 2


def test_no_command_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(capsys)
    assert code == 0 and err == "" and out.startswith("Usage: astromodal [OPTIONS] COMMAND")
    code, out, err = run_main(capsys, "tokenizers")
    assert code == 0 and err == "" and "  train " in out
    code, out, err = run_main(capsys, "nosuch")
    assert code == 2 and err == "Error: No such command 'nosuch'. (see 'astromodal --help')\n"


def test_plugins_human_shows_broken(fake_dists: Any) -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "astromodal-core 0.1.0  [ok]  (built in)" in result.output
    assert "astromodal-fake-broken 0.1.0  [BROKEN]" in result.output
    assert "libwise" in result.output
    assert "astromodal-fake-ok 0.3.0  [ok]" in result.output


def test_plugins_debug_shows_the_traceback_of_a_broken_plugin(fake_dists: Any) -> None:
    result = CliRunner().invoke(cli, ["--debug", "plugins"])
    assert result.exit_code == 0, result.output
    assert "Traceback (most recent call last)" in result.output and "libwise" in result.output


def test_keys_json(toy_plugin: Any) -> None:
    result = CliRunner().invoke(cli, ["keys", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {
            "name": "tok_toy",
            "vocab_size": 9,
            "layout": "scalar",
            "max_length": 1,
            "modality": "ToyValue",
            "description": "",
            "mask_token": 8,
            "shape": None,
            "ordinal": False,
            "plugin": "toy",
        }
    ]


def test_keys_human_table(toy_plugin: Any) -> None:
    result = CliRunner().invoke(cli, ["keys"])
    lines = result.output.splitlines()
    assert lines[0].split() == ["key", "vocab", "layout", "max_len", "mask", "modality", "plugin"]
    assert lines[2].split() == ["tok_toy", "9", "scalar", "1", "8", "ToyValue", "toy"]


def test_modalities_json(toy_plugin: Any) -> None:
    data = json.loads(CliRunner().invoke(cli, ["modalities", "--json"]).output)
    assert data[0]["name"] == "ToyValue"
    assert data[0]["token_key"] == "tok_toy"
    assert data[0]["codecs"] == ["ToyCodec"]


def test_hook_register_commands() -> None:
    group = click.Group("astromodal")

    class P:
        @hookimpl
        def astromodal_register_commands(self, cli: Any) -> None:
            @cli.command()
            def hello() -> None:
                click.echo("hello from a plugin")

    astromodal_core.register_plugin(P(), name="cmd")
    try:
        from astromodal_core.registry import iter_command_hooks

        iter_command_hooks(group)
        result = CliRunner().invoke(group, ["hello"])
        assert result.output == "hello from a plugin\n"
    finally:
        astromodal_core.unregister("cmd")


# plugin isolation -----------------------------------------------------------------------------
def test_a_plugin_failing_in_register_commands_is_broken_and_the_rest_runs(
    toy_plugin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    class Fails:
        @hookimpl
        def astromodal_register_commands(self, cli: Any) -> None:
            @cli.command()
            def half() -> None:
                """Added before the failure: taken out again."""

            raise RuntimeError("click version mismatch")

        @hookimpl
        def astromodal_register_tokenizers(self, register: Any) -> None:
            register("fails", type("FailsTokenizer", (), {}))

    astromodal_core.register_plugin(Fails(), name="fails")
    try:
        code, out, err = run_main(capsys, "keys", "--json")
        assert code == 0 and json.loads(out)[0]["name"] == "tok_toy"
        assert err == ("Warning: plugin 'fails' failed to load: astromodal_register_commands raised "
                       "RuntimeError: click version mismatch\n")
        code, out, _ = run_main(capsys, "plugins", "--json")
        fails = next(p for p in json.loads(out) if p["name"] == "fails")
        assert code == 0 and fails["status"] == "broken"
        assert fails["error"] == "astromodal_register_commands raised RuntimeError: click version mismatch"
        assert "half" not in cli.list_commands(click.Context(cli))
        assert "fails" not in astromodal_core.get_registry().tokenizers
    finally:
        astromodal_core.unregister("fails")


def test_a_plugin_replacing_another_plugins_command_is_broken(capsys: pytest.CaptureFixture[str]) -> None:
    class Replaces:
        @hookimpl
        def astromodal_register_commands(self, cli: Any) -> None:
            @cli.command("keys")
            def keys() -> None:
                click.echo("mine")

    astromodal_core.register_plugin(Replaces(), name="replaces")
    try:
        code, out, err = run_main(capsys, "keys", "--json")
        assert code == 0 and json.loads(out) == []
        assert "command 'keys' is already registered by plugin 'astromodal-core'" in err
    finally:
        astromodal_core.unregister("replaces")


def test_plugins_lists_requested_names_that_matched_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(registry.ENV_VAR, "astromodal-nope")
    registry.reset()
    code, out, err = run_main(capsys, "plugins")
    assert code == 0
    assert out.splitlines() == [
        "No plugins loaded besides the built-in ones.",
        "astromodal-core 0.1.0  [ok]  (built in)",
        "  hooks: astromodal_register_commands",
        "astromodal-nope  [NOT FOUND]",
        "  named in ASTROMODAL_PLUGINS, but no installed plugin matches it",
    ]
    assert err.startswith("Warning: ASTROMODAL_PLUGINS names 'astromodal-nope', which matches no "
                          "installed plugin; installed: ") and err.count("\n") == 1
    registry.reset()
    code, out, _ = run_main(capsys, "plugins", "--json")
    assert json.loads(out)[-1] == {
        "name": "astromodal-nope", "version": "", "builtin": False, "hooks": [], "status": "missing",
        "error": "named in ASTROMODAL_PLUGINS, but no installed plugin matches it"}


@pytest.mark.parametrize("how", ["option", "env"])
def test_strict_makes_an_unmatched_name_an_error(
    how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(registry.ENV_VAR, "astromodal-nope")
    registry.reset()
    if how == "env":
        monkeypatch.setenv(registry.STRICT_VAR, "1")
    code, out, err = run_main(capsys, *(["--strict"] if how == "option" else []), "plugins")
    assert_one_error_line(code, err, "ASTROMODAL_PLUGINS names 'astromodal-nope'")
    assert out == ""
    assert registry.is_strict() is (how == "env")  # --strict lasts for one main() call


def test_strict_option_through_click_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.ENV_VAR, "astromodal-nope")
    registry.reset()
    result = CliRunner().invoke(cli, ["--strict", "keys"])
    assert result.exit_code != 0 and "astromodal-nope" in str(result.exception)


# one-line errors ------------------------------------------------------------------------------
@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("tokenizers: {}\n")
    return path


def test_out_that_is_a_file(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "taken.txt"
    target.write_text("x")
    code, _, err = run_main(capsys, "tokenizers", "train", "--config", str(config), "--out", str(target))
    line = assert_one_error_line(code, err, "'--out'", str(target), "is a file")
    assert code == 2 and line.endswith("(see 'astromodal tokenizers train --help')")
    code, _, err = run_main(capsys, "encode", "--config", str(config), "--out", str(target))
    assert_one_error_line(code, err, "'--out'", str(target))


def test_merged_that_is_a_directory(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "encode", "--config", str(config), "--out", str(tmp_path / "store"),
                            "--merged", str(tmp_path))
    assert_one_error_line(code, err, "'--merged'", str(tmp_path), "is a directory")


def test_workers_below_one(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "tokenizers", "train", "--config", str(config), "--out",
                            str(tmp_path / "t"), "--workers", "0")
    assert_one_error_line(code, err, "'--workers'", "0 is not in the range x>=1")


def test_non_utf8_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("tokenizers:\n  scalar: {}\n# r\xe9sum\xe9\n".encode("latin-1"))
    code, _, err = run_main(capsys, "tokenizers", "train", "--config", str(bad), "--out", str(tmp_path / "t"))
    assert_one_error_line(code, err, str(bad), "not UTF-8 text (byte 0xe9 at offset 28)")
    with pytest.raises(ConfigError, match="latin1.yaml: not UTF-8"):
        astromodal_core.load_config(bad)


def test_config_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tokenizers:\n  scalar: [1,\n")
    code, _, err = run_main(capsys, "tokenizers", "train", "--config", str(bad), "--out", str(tmp_path / "t"))
    assert_one_error_line(code, err, str(bad), "invalid YAML")
    code, _, err = run_main(capsys, "tokenizers", "train", "--config", str(tmp_path), "--out", str(tmp_path / "t"))
    assert_one_error_line(code, err, str(tmp_path), "is a directory, not a config file")
    code, _, err = run_main(capsys, "encode", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "s"))
    assert_one_error_line(code, err, "missing.yaml: config file not found")


ERRORS = [
    (PermissionError(errno.EACCES, "Permission denied", "/data/out/tokens.parquet"),
     "Error: /data/out/tokens.parquet: Permission denied", 1),
    (FileExistsError(errno.EEXIST, "File exists", "/data/out"), "Error: /data/out: File exists", 1),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/cube"), "Error: /data/cube: Is a directory", 1),
    (OSError(errno.ENOSPC, "No space left on device", "/data/out/part-0.parquet"),
     "Error: /data/out/part-0.parquet: No space left on device", 1),
    (OSError(errno.ENOSPC, "No space left on device"),
     "Error: No space left on device (while writing output; free some space or choose another --out)", 1),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/tmp/a", None, "/data/b"),
     "Error: /tmp/a -> /data/b: Invalid cross-device link", 1),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
     "Error: cannot read text as utf-8: invalid start byte at byte 0", 1),
    (json.JSONDecodeError("Expecting value", "{\n  x", 4),
     "Error: invalid JSON: Expecting value (line 2, column 3)", 1),
    (BrokenProcessPool("A process in the process pool was terminated abruptly"),
     "Error: a worker process died (killed by the system, out of memory?): A process in the process "
     "pool was terminated abruptly; rerun with --workers 1 to see its error", 1),
    (KeyboardInterrupt(), "Error: interrupted", 130),
    (DataError("cube.parquet: column 'mag_r' is missing\n(found: id, z)"),
     "Error: cube.parquet: column 'mag_r' is missing (found: id, z)", 1),
    (MemoryError(), "Error: out of memory; try fewer --workers or smaller inputs", 1),
    (RuntimeError("unexpected state"),
     "Error: RuntimeError: unexpected state (unexpected: rerun with --debug for the traceback)", 1),
]


@pytest.mark.parametrize(("exc", "line", "status"), ERRORS, ids=[type(e[0]).__name__ + str(i) for i, e in enumerate(ERRORS)])
def test_main_reports_every_failure_in_one_line(
    exc: BaseException, line: str, status: int, command_plugin: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom() -> None:
        raise exc

    command_plugin("boom", boom)
    code, _, err = run_main(capsys, "boom")
    assert code == status
    assert [x for x in err.splitlines() if x.strip()] == [line]


def test_debug_shows_the_traceback(
    command_plugin: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom() -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/data/x")

    command_plugin("boom", boom)
    with pytest.raises(PermissionError):
        main(["--debug", "boom"])
    monkeypatch.setenv("ASTROMODAL_DEBUG", "1")
    with pytest.raises(PermissionError):
        main(["boom"])
    monkeypatch.setenv("ASTROMODAL_DEBUG", "0")
    code, _, err = run_main(capsys, "boom")
    assert_one_error_line(code, err, "/data/x: Permission denied")


def test_a_broken_tokenizer_directory_is_one_line(tmp_path: Path, config: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    tdir = tmp_path / "tok"
    (tdir / "tokenizers.json").mkdir(parents=True)  # a directory where the manifest should be
    args = ["encode", "--config", str(config), "--tokenizers", str(tdir), "--out", str(tmp_path / "s")]
    code, _, err = run_main(capsys, *args)
    assert_one_error_line(code, err, str(tdir / "tokenizers.json"))
    (tdir / "tokenizers.json").rmdir()
    (tdir / "tokenizers.json").write_text('{"members": ')
    code, _, err = run_main(capsys, *args)
    assert_one_error_line(code, err, str(tdir / "tokenizers.json"))


def test_console_script_prints_one_line(tmp_path: Path) -> None:
    """The real entry point in a fresh process: no traceback, one line, status 1."""
    bad = tmp_path / "cp1252.yaml"
    bad.write_bytes(b"tokenizers: {}\n# \x93quoted\x94\n")
    env = {**os.environ, registry.ENV_VAR: ""}
    proc = subprocess.run(
        [sys.executable, "-m", "astromodal_core", "tokenizers", "train", "--config", str(bad),
         "--out", str(tmp_path / "t")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == f"Error: {bad}: not UTF-8 text (byte 0x93 at offset 17); save the config as UTF-8\n"
