"""Every snippet of seed 000's ScalarTokenizer section runs as written, only paths substituted."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from astromodal_splus.synthetic import catalogue, write_parquet

SEED = Path(__file__).parent / "data" / "seed_000.md"
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.S)


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _blocks(text: str, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(text) if kind == lang]


def test_scalar_tokenizer_section_runs(tmp_path, monkeypatch, capsys):
    text = SEED.read_text()
    blocks = _blocks(_section(text, "ScalarTokenizer"), "python")
    assert len(blocks) == 3  # Training, Encoding, Configuration from astromodal.config
    cubes = [write_parquet(tmp_path / f"datacube_{i}.parquet",
                           catalogue(3000, seed=i, id_start=i * 10**6), 1000) for i in (1, 2)]
    write_parquet(tmp_path / "datacube_test.parquet", catalogue(1500, seed=7, id_start=10**8), 500)
    # config.yaml in the seed's shape: its own tokenizers block plus the data.mag_filter it reads
    yaml = _blocks(_section(text, "Integration with Configuration System"), "yaml")[0]
    (tmp_path / "config.yaml").write_text(yaml + "\ndata:\n  mag_filter:\n    min: 14.0\n    max: 22.0\n")
    monkeypatch.chdir(tmp_path)

    namespace: dict = {}
    for code in blocks:
        code = code.replace("/path/to/datacube_1.parquet", str(cubes[0]))
        code = code.replace("/path/to/datacube_2.parquet", str(cubes[1]))
        assert "/path/to" not in code
        exec(compile(code, str(SEED), "exec"), namespace)

    assert (tmp_path / "scalar_tokenizer_config.npz").is_file()
    tokens, ids = namespace["tokens"], namespace["ids"]
    assert tokens.dtype == np.uint16 and tokens.shape == (1500, 6) and namespace["n_bins"] == 1024
    assert list(namespace["columns"]) == namespace["scalar_columns"]
    np.testing.assert_array_equal(ids, pq.read_table("datacube_test.parquet").column("id").to_numpy())
    out = capsys.readouterr().out
    assert "Encoded 1500 rows x 6 columns" in out and f"Token range: [{tokens.min()}, {tokens.max()}]" in out
    assert tokens.max() == 1024  # sentinels in the test cube are the mask token
    configured = namespace["tokenizer"]
    assert (configured.n_bins, configured.max_values_per_col) == (1024, 2_000_000)
    assert (configured.mag_min, configured.mag_max) == (14.0, 22.0) and not configured.is_fitted


def test_installation_import_of_scalar_tokenizer():
    from astromodal.tokenizers import ScalarTokenizer

    assert ScalarTokenizer.__module__ == "astromodal_splus.tokenizer"
