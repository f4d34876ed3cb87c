"""Fixtures for the end-to-end tests: a tiny synthetic sky, the tutorial plugin in-process."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WISE_SRC = ROOT / "docs" / "examples" / "astromodal-wise" / "src"
PLUGIN_SRC = {
    "splus": ROOT / "plugins" / "splus" / "src",
    "spectra": ROOT / "plugins" / "spectra" / "src",
    "image": ROOT / "plugins" / "image" / "src",
}


@pytest.fixture
def wise_plugin():
    """The WISE tutorial plugin registered in-process (its source on sys.path)."""
    from astromodal_core import get_registry, register_plugin, unregister

    if str(WISE_SRC) not in sys.path:
        sys.path.insert(0, str(WISE_SRC))
    import astromodal_wise.plugin as plugin

    if "astromodal-wise" in get_registry().plugins:  # installed for real: use that
        yield plugin
        return
    name = "astromodal-wise-test"
    register_plugin(plugin, name)
    yield plugin
    unregister(name)


@pytest.fixture
def wise_cubes(tmp_path, wise_plugin):
    """Three small datacubes with WISE columns (the tutorial plugin's demo contribution)."""
    from astromodal_demo.datacube import build_datacube
    from astromodal_wise.demo import DEMO_COLUMNS

    cube = build_datacube(tmp_path / "cubes", n=300, seed=3, n_files=3,
                          contributions=[DEMO_COLUMNS], real_samples=False, progress=False)
    return list(cube.files)


@pytest.fixture(scope="session")
def survey_demo_columns():
    """The demo contributions of the three survey plugins (imported directly, so the tests do
    not depend on their plugin.py wiring the demo hook)."""
    from astromodal_image.demo import DEMO_COLUMNS as image
    from astromodal_spectra.demo import DEMO_COLUMNS as spectra
    from astromodal_splus.demo import DEMO_COLUMNS as splus

    return [splus, spectra, image]
