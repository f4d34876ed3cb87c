"""Every python block of seed 000's SpectrumTokenizer section runs as written (paths aside)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from spectra_testdata import DATA, make_datacube


def _section_blocks() -> dict[str, str]:
    text = (DATA / "seed_000.md").read_text()
    start = text.index("## SpectrumTokenizer")
    end = text.index("## ImageTokenizer")
    section = text[start:end]
    blocks: dict[str, str] = {}
    for m in re.finditer(r"### ([^\n]+)\n(.*?)(?=\n### |\Z)", section, re.S):
        code = re.findall(r"```python\n(.*?)```", m.group(2), re.S)
        if code:
            blocks[m.group(1).strip()] = "\n".join(code)
    return blocks


def test_seed_section_has_the_three_snippets() -> None:
    assert list(_section_blocks()) == ["Training", "Encoding", "Adding ZTF Groups (Auto-detection)"]


def test_seed_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cube = make_datacube(tmp_path / "datacube_test.parquet", n=4)
    blocks = _section_blocks()
    ns: dict = {"parquet_files": [str(cube)], "i": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fewer distinct XP vectors than 2048
        exec(compile(blocks["Training"], "seed:Training", "exec"), ns)
    assert (tmp_path / "spectrum_tokenizer_config.npz").is_file()
    assert len(list(tmp_path.glob("spectrum_tokenizer_config.codebooks.*.safetensors"))) == 1
    exec(compile(blocks["Encoding"], "seed:Encoding", "exec"), ns)
    result = ns["result"]
    assert ns["desi_b_tokens"].shape == (4, 2751)
    assert ns["desi_b_tokens"].dtype == np.uint16
    assert result["tokens_desi_r"].shape == (4, 2326)
    assert result["tokens_desi_z"].shape == (4, 2881)
    # the last row has no spectrum: all mask tokens (codebook_size)
    assert np.all(ns["desi_b_tokens"][3] == 2048)
    assert ns["desi_b_tokens"][0, 5:].max() < 2048
    # masked edge pixels stay masked
    assert np.all(ns["desi_b_tokens"][0, :5] == 2048)
    indptr = ns["gaiaxp_bp_indptr"]
    assert indptr.dtype == np.int64 and indptr.shape == (5,)
    assert np.diff(indptr).tolist() == [600, 0, 600, 600]  # source 1 has no BP
    assert ns["row_tokens"].shape == (600,)
    assert ns["ids"].tolist() == [1000, 1001, 1002, 1003]
    assert result["id_col"] == "id"
    exec(compile(blocks["Adding ZTF Groups (Auto-detection)"], "seed:ZTF", "exec"), ns)
    tok = ns["tokenizer"]
    assert [g["name"] for g in tok.groups][-1] == "ztf_g"
    assert tok.codebook_size == 2048
