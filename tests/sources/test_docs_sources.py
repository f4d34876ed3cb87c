"""Every page of docs/sources runs: its python blocks, in order, in a fresh directory."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "sources"
PAGES = sorted(p.name for p in DOCS.glob("*.md"))
NEEDS = {"hats.md": ["lsdb", "astromodal_splus"], "fits.md": ["astropy", "astromodal_splus"],
         "parquet.md": ["astromodal_splus"], "column-maps.md": ["astromodal_splus"], "index.md": ["astropy"]}


def test_every_page_is_in_the_nav():
    nav = (DOCS.parents[1] / "mkdocs.yml").read_text()
    assert all(f"sources/{p}" in nav for p in PAGES) and len(PAGES) == 5


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, tmp_path, monkeypatch):
    for module in NEEDS.get(page, []):
        pytest.importorskip(module)
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    assert blocks, f"docs/sources/{page} has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lsdb / pandas deprecations are not the page's business
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/sources/{page}[{i}]", "exec"), namespace)
