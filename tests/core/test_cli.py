"""The astromodal command: plugins, keys, modalities, and plugin subcommands."""

from __future__ import annotations

import json
from typing import Any

import click
from click.testing import CliRunner

import astromodal_core
from astromodal_core import hookimpl
from astromodal_core.cli import cli


def test_plugins_json_exact(toy_plugin: Any) -> None:
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {
            "name": "toy",
            "version": "",
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
        }
    ]


def test_plugins_human_shows_broken(fake_dists: Any) -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    assert "astromodal-fake-broken 0.1.0  [BROKEN]" in result.output
    assert "libwise" in result.output
    assert "astromodal-fake-ok 0.3.0  [ok]" in result.output


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
