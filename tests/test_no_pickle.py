"""Nothing in the repository can unpickle."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATTERNS = [
    (re.compile(r"^\s*(import|from)\s+(pickle|dill|joblib|cloudpickle)\b", re.M), "imports a pickle library"),
    (re.compile(r"allow_pickle\s*=\s*True"), "allow_pickle=True"),
    (re.compile(r"pickle\.loads?\("), "pickle.load"),
]


def _python_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True)
    files = [ROOT / f for f in out.stdout.split()] if out.returncode == 0 and out.stdout else []
    return files or [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts]


def test_no_pickle_anywhere() -> None:
    offenders = []
    for path in _python_files():
        if path.name == "test_no_pickle.py" or not path.exists():
            continue
        text = path.read_text()
        offenders += [f"{path.relative_to(ROOT)}: {why}" for rx, why in PATTERNS if rx.search(text)]
        for m in re.finditer(r"torch\.load\(.*", text):  # the call, to the end of its line
            if "weights_only=True" not in m.group(0):
                offenders.append(f"{path.relative_to(ROOT)}: torch.load without weights_only=True")
    assert offenders == []
