"""Registry: loading, lookups, plugin isolation, and loud, named failures."""

from __future__ import annotations

import importlib
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
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
from astromodal_core.errors import RegistryError
from astromodal_core.hookspecs import hookspec


@pytest.fixture
def dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``add(dist_name, source)``: install a one-module distribution with an ``astromodal``
    entry point (a real dist-info on sys.path; each added one is found before the earlier ones)
    and select exactly the added ones with ASTROMODAL_PLUGINS."""
    names: list[str] = []
    modules: list[str] = []

    def add(dist: str, source: str, version: str = "1.0") -> None:
        module = dist.replace("-", "_")
        root = tmp_path / f"site{len(names)}"
        (root / module).mkdir(parents=True)
        (root / module / "__init__.py").write_text(textwrap.dedent(source))
        info = root / f"{module}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[astromodal]\n{module} = {module}\n")
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()
        names.append(dist)
        modules.append(module)
        monkeypatch.setenv(registry.ENV_VAR, ",".join(names))
        registry.reset()

    yield add
    for m in modules:
        sys.modules.pop(m, None)


def _load_quietly() -> Any:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = get_registry()
    return reg, [str(w.message) for w in caught]


OK_SOURCE = """
    from astromodal_core import TokenKey, hookimpl

    @hookimpl
    def astromodal_register_token_keys(register):
        register(TokenKey("tok_fine", 5))
"""


def test_empty_env_var_loads_only_the_builtin_plugin() -> None:
    reg = get_registry()
    assert reg.plugins == {
        "astromodal-core": {
            "name": "astromodal-core",
            "version": astromodal_core.__version__,
            "builtin": True,
            "hooks": ["astromodal_register_commands"],
            "status": "ok",
        }
    }
    assert reg.token_keys() == {} and reg.missing == [] and reg.broken == {}


def test_in_process_plugin_registers_everything(toy_plugin: Any, toy: Any) -> None:
    reg = get_registry()
    assert reg.modality("ToyValue") is toy.ToyValue
    assert reg.modality(toy.ToyValue) is toy.ToyValue
    assert reg.token_key("tok_toy").vocab_size == 9
    assert reg.owner("tok_toy") == "toy"
    assert reg.plugins["toy"]["status"] == "ok"
    assert reg.plugins["toy"]["builtin"] is False
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
    with pytest.raises(KeyError) as info:  # a KeyError and a RegistryError, readable
        reg.tokenizer("nope")
    assert isinstance(info.value, RegistryError)
    assert str(info.value) == "unknown tokenizer 'nope'; registered: []"


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

        @hookimpl
        def astromodal_register_tokenizers(self, register: Any) -> None:
            register("bad", type("BadTokenizer", (), {}))

    astromodal_core.register_plugin(Bad(), name="bad")
    try:
        with pytest.warns(RuntimeWarning, match="plugin 'bad' failed to load: "
                          "astromodal_register_token_keys raised RegistrationError"):
            reg = get_registry()
        assert reg.plugins["bad"]["status"] == "broken"
        assert "not a TokenKey" in reg.plugins["bad"]["error"]
        assert "tok_toy" in reg.token_keys()  # the others still load
        assert "bad" not in reg.tokenizers  # nothing of a broken plugin is kept
        assert not registry.get_plugin_manager().has_plugin("bad")
    finally:
        astromodal_core.unregister("bad")


@pytest.mark.parametrize("raised", [SystemExit(2), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
def test_a_hook_raising_systemexit_is_isolated_but_ctrl_c_is_not(raised: BaseException, toy_plugin: Any) -> None:
    class Exits:
        @hookimpl
        def astromodal_register_tokenizers(self, register: Any) -> None:
            raise raised

    astromodal_core.register_plugin(Exits(), name="exits")
    try:
        if isinstance(raised, KeyboardInterrupt):
            with pytest.raises(KeyboardInterrupt):
                get_registry()
            return
        reg, messages = _load_quietly()
        assert reg.plugins["exits"]["error"] == "astromodal_register_tokenizers raised called sys.exit(2)"
        assert "tok_toy" in reg.token_keys()
    finally:
        astromodal_core.unregister("exits")


def test_unknown_hook_fails_check_pending() -> None:
    class Typo:
        @hookimpl
        def astromodal_register_tokenkeys(self, register: Any) -> None:  # misspelt
            pass

    with pytest.raises(PluginLoadError, match="'typo'.*unknown hook 'astromodal_register_tokenkeys' "
                       r"\(did you mean 'astromodal_register_token_keys'\?\)"):
        astromodal_core.register_plugin(Typo(), name="typo")
    assert not registry.get_plugin_manager().has_plugin("typo")


def test_wrong_hook_arguments_are_refused() -> None:
    class WrongArgs:
        @hookimpl
        def astromodal_register_token_keys(self, register: Any, extra: Any) -> None:
            pass

    with pytest.raises(PluginLoadError, match="'wrongargs'.*invalid hook implementation.*extra"):
        astromodal_core.register_plugin(WrongArgs(), name="wrongargs")
    assert not registry.get_plugin_manager().has_plugin("wrongargs")


def test_hook_may_accept_fewer_arguments(toy_plugin: Any) -> None:
    calls = []

    class NoArgs:
        @hookimpl
        def astromodal_register_tokenizers(self) -> None:
            calls.append(1)

    astromodal_core.register_plugin(NoArgs(), name="noargs")
    try:
        get_registry()
        assert calls == [1]
    finally:
        astromodal_core.unregister("noargs")


def test_entry_point_distribution_is_loaded(fake_dists: Any) -> None:
    reg, _ = _load_quietly()
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
    monkeypatch.setenv(registry.ENV_VAR, "astromodal_fake_OK")  # normalised like pip names
    registry.reset()
    reg = get_registry()
    assert set(reg.plugins) == {"astromodal-core", "astromodal-fake-ok"}


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import sys\nsys.exit(3)\n", "called sys.exit(3)"),
        ("raise SystemExit('no display')\n", "called sys.exit('no display')"),
        ("class Fatal(BaseException):\n    pass\n\nraise Fatal('at import')\n", "Fatal: at import"),
        ("from astromodal_core import hookimpl\n\n@hookimpl\ndef astromodal_register_tokenisers(register):\n"
         "    pass\n",
         "implements an unknown hook 'astromodal_register_tokenisers' (did you mean "
         "'astromodal_register_tokenizers'?); a hook another plugin adds needs "
         "@hookimpl(optionalhook=True)"),
        ("from astromodal_core import hookimpl\n\n@hookimpl\ndef astromodal_register_codecs(registr):\n"
         "    pass\n", "invalid hook implementation"),
        ("from astromodal_core import hookimpl\n\n@hookimpl\ndef astromodal_add_hookspecs(pluginmanager):\n"
         "    raise ValueError('no specs here')\n",
         "astromodal_add_hookspecs raised ValueError: no specs here"),
    ],
    ids=["sys.exit", "SystemExit", "BaseException", "misspelt-hook", "wrong-argument", "add-hookspecs-raises"],
)
def test_a_broken_distribution_is_isolated(dists: Any, source: str, error: str) -> None:
    dists("astromodal-iso-broken", source)
    dists("astromodal-iso-fine", OK_SOURCE)
    reg, messages = _load_quietly()
    assert reg.plugins["astromodal-iso-broken"]["status"] == "broken"
    assert error in reg.plugins["astromodal-iso-broken"]["error"]
    assert "\n" not in reg.plugins["astromodal-iso-broken"]["error"]
    assert any("plugin 'astromodal-iso-broken' failed to load" in m for m in messages)
    assert reg.plugins["astromodal-iso-fine"]["status"] == "ok"
    assert reg.owner("tok_fine") == "astromodal-iso-fine"


ADDER_SOURCE = """
    from astromodal_core import hookimpl
    from astromodal_core.hookspecs import hookspec


    class Specs:
        @staticmethod
        @hookspec
        def astromodal_register_widgets(register):
            "Register widgets."


    @hookimpl
    def astromodal_add_hookspecs(pluginmanager):
        pluginmanager.add_hookspecs(Specs)


    @hookimpl
    def astromodal_register_widgets(register):
        register("own-widget")
"""


def test_a_plugin_adds_hookspecs_that_others_implement(dists: Any) -> None:
    # found first on sys.path, so loaded before the plugin that adds the hook
    dists("astromodal-widget-adder", ADDER_SOURCE)
    dists("astromodal-widget-user", """
        from astromodal_core import hookimpl

        @hookimpl
        def astromodal_register_widgets(register):
            register("user-widget")
    """)
    reg, messages = _load_quietly()
    assert messages == []
    assert {p: reg.plugins[p]["status"] for p in reg.plugins} == {
        "astromodal-core": "ok", "astromodal-widget-adder": "ok", "astromodal-widget-user": "ok"}
    assert reg.added_hooks() == {"astromodal_register_widgets": "astromodal-widget-adder"}
    collected = reg.collect("astromodal_register_widgets")
    assert sorted((e.obj, e.plugin) for e in collected) == [
        ("own-widget", "astromodal-widget-adder"), ("user-widget", "astromodal-widget-user")]
    assert reg.collect("astromodal_register_nothing") == []


def test_a_wrong_implementation_of_an_added_hook_breaks_only_its_plugin(dists: Any) -> None:
    dists("astromodal-widget-adder", ADDER_SOURCE)
    dists("astromodal-widget-wrong", """
        from astromodal_core import hookimpl

        @hookimpl
        def astromodal_register_widgets(register, colour):
            pass
    """)
    reg, _ = _load_quietly()
    assert reg.plugins["astromodal-widget-adder"]["status"] == "ok"
    assert reg.plugins["astromodal-widget-wrong"]["status"] == "broken"
    assert "invalid hook implementation" in reg.plugins["astromodal-widget-wrong"]["error"]
    assert [e.obj for e in reg.collect("astromodal_register_widgets")] == ["own-widget"]


def test_an_optional_implementation_loads_without_the_plugin_that_adds_the_hook(dists: Any) -> None:
    dists("astromodal-widget-optional", """
        from astromodal_core import TokenKey, hookimpl

        @hookimpl(optionalhook=True)
        def astromodal_register_widgets(register):
            register("w")

        @hookimpl
        def astromodal_register_token_keys(register):
            register(TokenKey("tok_optional", 3))
    """)
    dists("astromodal-widget-required", """
        from astromodal_core import hookimpl

        @hookimpl
        def astromodal_register_widgets(register):
            register("w")
    """)
    reg, _ = _load_quietly()
    assert reg.plugins["astromodal-widget-optional"]["status"] == "ok"
    assert reg.owner("tok_optional") == "astromodal-widget-optional"
    assert reg.plugins["astromodal-widget-required"]["status"] == "broken"
    assert "unknown hook 'astromodal_register_widgets'" in reg.plugins["astromodal-widget-required"]["error"]


def test_a_plugin_failing_in_an_added_hook_is_marked_broken(dists: Any) -> None:
    dists("astromodal-widget-adder", ADDER_SOURCE)
    dists("astromodal-widget-failing", """
        from astromodal_core import TokenKey, hookimpl

        @hookimpl
        def astromodal_register_widgets(register):
            raise RuntimeError("widget factory offline")

        @hookimpl
        def astromodal_register_token_keys(register):
            register(TokenKey("tok_failing", 3))
    """)
    reg, _ = _load_quietly()
    with pytest.warns(RuntimeWarning, match="astromodal_register_widgets raised RuntimeError: widget factory offline"):
        collected = reg.collect_all()
    assert [e.obj for e in collected["astromodal_register_widgets"]] == ["own-widget"]
    assert reg.plugins["astromodal-widget-failing"]["status"] == "broken"
    again, _ = _load_quietly()  # the next registry leaves the broken plugin out entirely
    assert "tok_failing" not in again.token_keys()
    assert again.plugins["astromodal-widget-failing"]["status"] == "broken"


def test_hook_add_hookspecs() -> None:
    class Specs:
        @staticmethod
        @hookspec
        def astromodal_register_gadgets(register: Any) -> None:
            """Register gadgets."""

    class Adder:
        @hookimpl
        def astromodal_add_hookspecs(self, pluginmanager: Any) -> None:
            pluginmanager.add_hookspecs(Specs)

    class User:
        @hookimpl
        def astromodal_register_gadgets(self, register: Any) -> None:
            register("g1")

    astromodal_core.register_plugin(Adder(), name="adder")
    astromodal_core.register_plugin(User(), name="user")
    try:
        reg = get_registry()
        assert reg.added_hooks() == {"astromodal_register_gadgets": "adder"}
        assert [(e.name, e.plugin) for e in reg.collect("astromodal_register_gadgets")] == [("g1", "user")]
        assert list(reg.collect_all()) == ["astromodal_register_gadgets"]
    finally:
        astromodal_core.unregister("user")
        astromodal_core.unregister("adder")


def test_unmatched_plugin_name_warns(fake_dists: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.ENV_VAR, "astromodal-fake-ok,astromodal-nope")
    registry.reset()
    with pytest.warns(RuntimeWarning, match="ASTROMODAL_PLUGINS names 'astromodal-nope', which "
                      "matches no installed plugin; installed: .*astromodal-fake-ok"):
        reg = get_registry()
    assert reg.missing == ["astromodal-nope"]
    assert reg.plugins["astromodal-fake-ok"]["status"] == "ok"


def test_unmatched_plugin_name_is_an_error_when_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.ENV_VAR, "astromodal-nope")
    monkeypatch.setenv(registry.STRICT_VAR, "1")
    registry.reset()
    with pytest.raises(RegistryError, match="ASTROMODAL_PLUGINS names 'astromodal-nope'"):
        get_registry()
    monkeypatch.setenv(registry.STRICT_VAR, "0")
    registry.set_strict(True)
    try:
        with pytest.raises(RegistryError, match="'astromodal-nope'"):
            get_registry()
    finally:
        registry.set_strict(None)
    with pytest.warns(RuntimeWarning, match="'astromodal-nope'"):
        assert get_registry().missing == ["astromodal-nope"]


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


def test_the_core_has_no_demo_or_simulator() -> None:
    assert importlib.util.find_spec("astromodal_core.sky") is None
    assert not hasattr(astromodal_core.hookspecs, "astromodal_register_demo_columns")
    assert not hasattr(get_registry(), "demo_columns")


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
