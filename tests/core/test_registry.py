"""Registry: loading, lookups, and loud, named failures."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

import astromodal_core
from astromodal_core import (
    DuplicateRegistrationError,
    ModalityTypeError,
    PluginLoadError,
    RegistrationError,
    TokenKey,
    TokenKeyError,
    get_registry,
    hookimpl,
    registry,
)


def test_empty_env_var_loads_no_plugin() -> None:
    reg = get_registry()
    assert reg.plugins == {}
    assert reg.token_keys() == {}


def test_in_process_plugin_registers_everything(toy_plugin: Any, toy: Any) -> None:
    reg = get_registry()
    assert reg.modality("ToyValue") is toy.ToyValue
    assert reg.modality(toy.ToyValue) is toy.ToyValue
    assert reg.token_key("tok_toy").vocab_size == 9
    assert reg.owner("tok_toy") == "toy"
    assert reg.plugins["toy"]["status"] == "ok"
    assert reg.plugins["toy"]["hooks"] == [
        "astromodal_register_codecs",
        "astromodal_register_modalities",
        "astromodal_register_token_keys",
    ]


def test_codec_lookup_walks_the_class_hierarchy(toy_plugin: Any, toy: Any) -> None:
    assert get_registry().codec_for(toy.ToySubValue) is toy.ToyCodec
    assert get_registry().codec_for(toy.ToySubValue(value=[1.0])) is toy.ToyCodec


def test_unknown_lookups_name_what_is_missing(toy_plugin: Any) -> None:
    reg = get_registry()
    with pytest.raises(TokenKeyError, match="unknown token key 'tok_nope'.*tok_toy"):
        reg.token_key("tok_nope")
    with pytest.raises(ModalityTypeError, match="unknown modality 'Nope'"):
        reg.modality("Nope")
    with pytest.raises(ModalityTypeError, match="no codec registered for modality 'int'"):
        reg.codec_for(int)


def test_duplicate_token_key_names_both_plugins(toy_plugin: Any) -> None:
    class Clash:
        @hookimpl
        def astromodal_register_token_keys(self, register: Any) -> None:
            register(TokenKey("tok_toy", 4))

    astromodal_core.register_plugin(Clash(), name="clash")
    try:
        with pytest.raises(DuplicateRegistrationError, match="'tok_toy'.*'toy' and 'clash'"):
            get_registry()
    finally:
        astromodal_core.unregister("clash")


def test_duplicate_modality_name_names_both_plugins(toy_plugin: Any, toy: Any) -> None:
    class Clash:
        @hookimpl
        def astromodal_register_modalities(self, register: Any) -> None:
            register(toy.ToyValue)

    astromodal_core.register_plugin(Clash(), name="clash2")
    try:
        with pytest.raises(DuplicateRegistrationError, match="modality 'ToyValue'.*'toy' and 'clash2'"):
            get_registry()
    finally:
        astromodal_core.unregister("clash2")


def test_codec_for_unregistered_modality_names_the_codec(toy: Any) -> None:
    class OnlyCodec:
        @hookimpl
        def astromodal_register_codecs(self, register: Any) -> None:
            register(toy.ToyCodec)

    astromodal_core.register_plugin(OnlyCodec(), name="onlycodec")
    try:
        with pytest.raises(RegistrationError, match="codec 'ToyCodec'.*'ToyValue', which no plugin registered"):
            get_registry()
    finally:
        astromodal_core.unregister("onlycodec")


def test_registering_a_non_tokenkey_marks_the_plugin_broken(toy_plugin: Any) -> None:
    class Bad:
        @hookimpl
        def astromodal_register_token_keys(self, register: Any) -> None:
            register("tok_string")

    astromodal_core.register_plugin(Bad(), name="bad")
    try:
        with pytest.warns(RuntimeWarning, match="plugin 'bad' failed to load"):
            reg = get_registry()
        assert reg.plugins["bad"]["status"] == "broken"
        assert "not a TokenKey" in reg.plugins["bad"]["error"]
        assert "tok_toy" in reg.token_keys()  # the others still load
    finally:
        astromodal_core.unregister("bad")


def test_unknown_hook_fails_check_pending() -> None:
    class Typo:
        @hookimpl
        def astromodal_register_tokenkeys(self, register: Any) -> None:  # misspelt
            pass

    with pytest.raises(PluginLoadError, match="'typo'.*unknown hook"):
        astromodal_core.register_plugin(Typo(), name="typo")
    assert not registry.get_plugin_manager().has_plugin("typo")


def test_hook_may_accept_fewer_arguments(toy_plugin: Any) -> None:
    calls = []

    class NoArgs:
        @hookimpl
        def astromodal_register_demo_columns(self) -> None:
            calls.append(1)

    astromodal_core.register_plugin(NoArgs(), name="noargs")
    try:
        get_registry()
        assert calls == [1]
    finally:
        astromodal_core.unregister("noargs")


def test_entry_point_distribution_is_loaded(fake_dists: Any) -> None:
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        reg = get_registry()
    assert reg.token_key("tok_fake_w1").vocab_size == 65
    assert reg.owner("tok_fake_w1") == "astromodal-fake-ok"
    assert reg.plugins["astromodal-fake-ok"]["version"] == "0.3.0"


def test_broken_distribution_does_not_take_the_registry_down(fake_dists: Any) -> None:
    with pytest.warns(RuntimeWarning, match="astromodal-fake-broken.*libwise"):
        reg = get_registry()
    broken = reg.plugins["astromodal-fake-broken"]
    assert broken["status"] == "broken"
    assert "ImportError" in broken["error"] and "libwise" in broken["error"]
    assert isinstance(reg.broken["astromodal-fake-broken"], PluginLoadError)
    assert "tok_fake_w1" in reg.token_keys()


def test_env_var_selects_distributions(fake_dists: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.ENV_VAR, "astromodal-fake-ok")
    registry.reset()
    reg = get_registry()
    assert set(reg.plugins) == {"astromodal-fake-ok"}


def test_tokenizer_registration_and_facade(toy: Any) -> None:
    class Tok:
        pass

    Tok.__name__ = "ToyTokenizer"

    class P:
        @hookimpl
        def astromodal_register_tokenizers(self, register: Any) -> None:
            register("toy", Tok)

    astromodal_core.register_plugin(P(), name="toktok")
    try:
        import astromodal.tokenizers as facade

        assert get_registry().tokenizer("toy") is Tok
        assert get_registry().tokenizer("ToyTokenizer") is Tok
        assert facade.ToyTokenizer is Tok
        with pytest.raises(AttributeError, match="no 'ScalarTokenizer'.*install the plugin"):
            facade.ScalarTokenizer  # noqa: B018
    finally:
        astromodal_core.unregister("toktok")


def test_hook_register_modalities(toy_plugin: Any, toy: Any) -> None:
    assert get_registry().modalities["ToyValue"].obj is toy.ToyValue


def test_hook_register_codecs(toy_plugin: Any, toy: Any) -> None:
    assert [e.obj for e in get_registry().codecs] == [toy.ToyCodec]


def test_hook_register_token_keys(toy_plugin: Any) -> None:
    assert list(get_registry().token_keys()) == ["tok_toy"]


def test_hook_register_tokenizers() -> None:
    class T:
        pass

    class P:
        @hookimpl
        def astromodal_register_tokenizers(self, register: Any) -> None:
            register("t", T)

    astromodal_core.register_plugin(P(), name="tp")
    try:
        assert get_registry().tokenizers["t"].obj is T
    finally:
        astromodal_core.unregister("tp")


def test_hook_register_demo_columns() -> None:
    def make(sky: Any) -> dict[str, Any]:
        return {}

    class P:
        @hookimpl
        def astromodal_register_demo_columns(self, register: Any) -> None:
            register(make)

    astromodal_core.register_plugin(P(), name="dp")
    try:
        assert [e.obj for e in get_registry().demo_columns] == [make]
    finally:
        astromodal_core.unregister("dp")


def test_trace_env_var_prints_hook_calls(
    toy: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(registry.TRACE_VAR, "1")
    registry.reset()
    astromodal_core.register_plugin(toy.ToyPlugin(), name="toy")
    try:
        get_registry()
    finally:
        astromodal_core.unregister("toy")
    assert "astromodal: astromodal_register_token_keys -> ['toy']" in capsys.readouterr().err
