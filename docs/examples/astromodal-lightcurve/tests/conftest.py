"""Make the tutorial plugin importable when it is not pip-installed (the repository's test run)."""

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
