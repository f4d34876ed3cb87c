"""Every hook has a docs section titled with its signature and a test; the docs' example runs."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from astromodal_core import hookspecs

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "plugin-authoring.md"
# the core's hookspecs and those a plugin of this repository adds (astromodal_add_hookspecs)
SPEC_MODULES = [hookspecs] + [
    importlib.import_module(m) for m in ("astromodal_demo.hookspecs",) if importlib.util.find_spec(m.split(".")[0])
]
SPECS = {
    name: fn for module in SPEC_MODULES
    for name, fn in inspect.getmembers(module, inspect.isfunction) if name.startswith("astromodal_")
}
HOOKS = sorted(SPECS)


def _signature(name: str) -> str:
    params = inspect.signature(SPECS[name]).parameters
    return f"{name}({', '.join(params)})"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docs_section(hook: str) -> None:
    headings = re.findall(r"^#+ (.+)$", DOC.read_text(), flags=re.M)
    assert _signature(hook) in headings


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook: str) -> None:
    short = hook.removeprefix("astromodal_")
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    assert f"def test_hook_{short}(" in tests


def test_the_documented_example_plugin_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's minimal plugin registers, passes its own conformance test, and its tokens
    have physical values."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    module = next(b for b in blocks if b.startswith("# astromodal_flux.py"))
    test = next(b for b in blocks if b.startswith("# test_astromodal_flux.py"))
    (tmp_path / "astromodal_flux.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "astromodal_flux", raising=False)
    import astromodal_flux  # type: ignore[import-not-found]

    import astromodal_core

    astromodal_core.register_plugin(astromodal_flux, name="astromodal-flux")
    try:
        reg = astromodal_core.get_registry()
        assert reg.token_key("tok_flux").vocab_size == 11 and reg.owner("tok_flux") == "astromodal-flux"
        assert reg.tokenizer("flux") is astromodal_flux.FluxTokenizer
        namespace: dict[str, Any] = {}
        exec(compile(test, "test_astromodal_flux.py", "exec"), namespace)
        (tmp_path / "cubes").mkdir()
        namespace["test_flux_tokenizer_conforms"](tmp_path / "cubes")
        tok = astromodal_flux.FluxTokenizer.from_config({"n_bins": 10}).train(tmp_path / "cubes" / "cube_0.parquet")
        values = tok.token_values("tok_flux")
        assert values.shape == (11,) and np.isnan(values[10]) and np.all(np.diff(values[:10]) > 0)
        with pytest.raises(astromodal_core.ConfigError, match=r"tokenizers\.flux\.bins: unknown setting"):
            astromodal_flux.FluxTokenizer.from_config({"bins": 3})
    finally:
        astromodal_core.unregister("astromodal-flux")
