"""A fused CPU kernel (numba) for the arcsinh range compression of a batch of cutouts.

One pass over the pixels computes ``asinh((flux - offset) / scale)`` with NaN -> 0 and counts
the valid pixels of each row; torch's elementwise ``asinh`` costs about 15x more on CPU. The
result is finite for every finite pixel (no float32 overflow of ``a * a``).
"""

from __future__ import annotations

import numba
import numpy as np

from astromodal_core.jit import njit


@njit(parallel=True, cache=True, error_model="numpy")
def _asinh_compress(flux, offset, inv_scale, out, n_valid):  # pragma: no cover - compiled
    n, nb, npix = flux.shape
    for i in numba.prange(n):
        count = 0
        for p in range(npix):
            for b in range(nb):
                v = flux[i, b, p]
                if v != v:
                    out[i, p, b] = 0.0
                else:
                    y = (v - offset[b]) * inv_scale[b]
                    a = abs(y)
                    if a < np.float32(1e18):
                        r = np.log(a + np.sqrt(a * a + np.float32(1.0)))
                    elif a < np.float32(1e38):  # the same value (sqrt(a*a + 1) == a here), no overflow
                        r = np.log(a + a)
                    else:  # y overflowed float32: asinh in float64 (|asinh| < 1e3), never inf
                        a64 = abs((np.float64(v) - np.float64(offset[b])) * np.float64(inv_scale[b]))
                        r = np.float32(np.log(a64 + a64))
                    out[i, p, b] = r if y >= 0 else -r
                    count += 1
        n_valid[i] = count


def asinh_compress(
    flux: np.ndarray, offset: np.ndarray, scale: np.ndarray, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """float32 (n, bands, H, W) -> (compressed (n, H, W, bands) with NaN as 0, valid pixels per
    row (n,) int64). The channels-last output is what the encoder runs fastest on."""
    flux = np.ascontiguousarray(flux, dtype=np.float32)
    n, nb, h, w = flux.shape
    if out is None or out.shape[0] < n:
        out = np.empty((n, h, w, nb), dtype=np.float32)
    out = out[:n]
    n_valid = np.empty(n, dtype=np.int64)
    _asinh_compress(
        flux.reshape(n, nb, h * w),
        np.asarray(offset, dtype=np.float32),
        (1.0 / np.asarray(scale, dtype=np.float32)).astype(np.float32),
        out.reshape(n, h * w, nb),
        n_valid,
    )
    return out, n_valid
