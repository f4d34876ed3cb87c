"""Demo datacube columns ``wise_w1`` .. ``wise_w4`` (Vega magnitudes, NaN = not detected)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from astromodal_demo.sky import DemoColumns, Sky, photometry, tophat

#: band -> (central wavelength A, width A, AB - Vega offset, 5-sigma depth in Vega mag)
WISE_BANDS = {
    "w1": (33526.0, 6600.0, 2.699, 17.1),
    "w2": (46028.0, 10400.0, 3.339, 15.7),
    "w3": (115608.0, 55000.0, 5.174, 11.5),
    "w4": (220883.0, 41000.0, 6.620, 8.0),
}


def make_columns(sky: Sky, options: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """WISE magnitudes from the sky's SEDs through top-hat W1-W4, with noise and depth."""
    rng = sky.rng("wise")
    true = photometry(sky, {b: tophat(c, w) for b, (c, w, _, _) in WISE_BANDS.items()}, step=50.0)
    out = {}
    for band, (_, _, offset, depth) in WISE_BANDS.items():
        vega = true[band] - offset
        sigma = 0.2 * 10 ** (0.4 * (vega - depth)) + 0.02
        measured = vega + rng.normal(size=len(sky)) * sigma
        out[f"wise_{band}"] = np.where(measured < depth, measured, np.nan)
    return out


DEMO_COLUMNS = DemoColumns("wise", make_columns, "WISE W1-W4 Vega magnitudes (NaN = not detected)")
