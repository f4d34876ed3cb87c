"""Ordinal token keys as values: bin tables, input features and the discretised mixture head.

An ordinal key's real ids (every id but the mask token, and, when the tokenizer's values are
known, only ids with a finite value) are ranked ``r = 0 .. n-1`` in id order. Each gets

- ``u = r / (n - 1)``: its place along the key, in [0, 1] (kept for inspection);
- a normal score ``t = Phi^-1((r + 0.5) / n)``: for quantile bins, whose ids are equally
  populated, ``t`` of the training data is close to a standard normal;
- its standardised physical value ``(value - median) / (IQR / 1.349)`` of the key's bin
  values (clipped to +-20), or ``t`` again when no values are known;
- the bin ``[Phi^-1(r / n), Phi^-1((r + 1) / n))`` on the normal-score axis.

The mixture head predicts ``K`` Gaussians on that axis; the probability of an id is the
mixture's mass over its bin. Its log-likelihood is a proper scoring rule, the distribution is
smooth across neighbouring bins whatever the number of bins, and its marginal at
initialisation is about the data's (a standard normal on this axis).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import ndtri

from astromodal_core.modality import TokenKey

#: columns of an ordinal table: place in [0, 1], normal score, standardised value, bin edges
U, SCORE, VALUE, LO, HI = range(5)
TABLE_COLUMNS = 5
#: the outer bin edges on the normal-score axis stand in for -inf / +inf (finite gradients)
EDGE = 1.0e3
VALUE_CLIP = 20.0
LOG_SIGMA_RANGE = (-7.0, 3.0)


def real_ids(key: TokenKey, values: np.ndarray | None = None) -> np.ndarray:
    """Boolean (vocab,): ids that stand for a value (not the mask token; finite when known)."""
    real = np.ones(key.vocab_size, dtype=bool)
    if key.mask_token is not None:
        real[key.mask_token] = False
    if values is not None:
        real &= np.isfinite(np.asarray(values, dtype=np.float64))
    return real


def ordinal_table(key: TokenKey, values: np.ndarray | None = None) -> np.ndarray:
    """float32 (vocab, 5): ``u``, normal score, standardised value, bin low and high edge.

    Ids that are no real bin get the columns of the nearest real id below (above for the
    first) and an empty bin (low = high), so they are never predicted.
    """
    if values is not None:  # the value protocol also allows one value per real id (no mask entry)
        v = np.full(key.vocab_size, np.nan)
        given = np.asarray(values, dtype=np.float64).ravel()[: key.vocab_size]
        v[: len(given)] = given
        values = v
    real = real_ids(key, values)
    n = int(real.sum())
    table = np.zeros((key.vocab_size, TABLE_COLUMNS), dtype=np.float64)
    if n == 0:
        return table.astype(np.float32)
    r = np.arange(n, dtype=np.float64)
    edges = ndtri(np.arange(n + 1, dtype=np.float64) / n)
    edges[0], edges[-1] = -EDGE, EDGE
    rows = np.zeros((n, TABLE_COLUMNS))
    rows[:, U] = r / max(1, n - 1)
    rows[:, SCORE] = ndtri((r + 0.5) / n)
    rows[:, LO], rows[:, HI] = edges[:-1], edges[1:]
    if values is not None:
        v = values[real]
        q25, q50, q75 = np.percentile(v, [25, 50, 75])
        scale = (q75 - q25) / 1.349
        if not np.isfinite(scale) or scale <= 0:
            scale = float(np.std(v)) or 1.0
        rows[:, VALUE] = np.clip((v - q50) / scale, -VALUE_CLIP, VALUE_CLIP)
    else:
        rows[:, VALUE] = rows[:, SCORE]
    idx = np.flatnonzero(real)
    table[idx] = rows
    # ids without a value: copy a real neighbour's features, empty bin
    fill = np.maximum.accumulate(np.where(real, np.arange(key.vocab_size), -1))
    first = idx[0]
    fill = np.where(fill < 0, first, fill)
    fake = ~real
    table[fake] = table[fill[fake]]
    table[fake, LO] = table[fake, HI] = table[fill[fake], HI]
    return table.astype(np.float32)


def input_features(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(n, 2): the normal score and the standardised value of each id.

    Only these smooth features: with Fourier features of the rank up to one turn per eight
    bins as well, the model overfitted 5,400 BOSS galaxies within 800 steps (photo-z
    sigma_NMAD 0.026 against 0.021 without them).
    """
    return table[ids][:, SCORE:VALUE + 1]


def log_diff_ndtr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(Phi(b) - Phi(a))`` for ``a <= b``, in float64, accurate in both tails (very
    negative, not -inf, when a == b: callers mask empty bins themselves)."""
    a, b = a.double(), b.double()
    flip = a > 0
    lo = torch.where(flip, -b, a)
    hi = torch.where(flip, -a, b)
    la, lb = torch.special.log_ndtr(lo), torch.special.log_ndtr(hi)
    d = (la - lb).clamp(max=-1e-15)
    return lb + torch.log(-torch.expm1(d))


def mixture_params(raw: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(log weights, means, sigmas)``, each (..., k), from the head's (..., 3k) output."""
    raw = raw.float()
    logw = torch.log_softmax(raw[..., :k], dim=-1)
    mu = raw[..., k:2 * k]
    sigma = torch.exp(raw[..., 2 * k:].clamp(*LOG_SIGMA_RANGE))
    return logw, mu, sigma


def bin_log_probs(raw: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, k: int) -> torch.Tensor:
    """Log mixture mass over bins ``[lo, hi)``: raw (..., 3k) and lo, hi broadcastable to
    (..., m) give (..., m). An empty bin (lo == hi) gets -inf."""
    logw, mu, sigma = mixture_params(raw, k)
    a = (lo[..., None] - mu[..., None, :]) / sigma[..., None, :]
    b = (hi[..., None] - mu[..., None, :]) / sigma[..., None, :]
    out = torch.logsumexp(logw[..., None, :].double() + log_diff_ndtr(a, b), dim=-1).float()
    return torch.where(hi > lo, out, torch.full_like(out, float("-inf")))


def all_bin_log_probs(raw: torch.Tensor, table: torch.Tensor, k: int) -> torch.Tensor:
    """Log probabilities (n, vocab) of every id from the head's output (n, 3k): the mixture's
    CDF evaluated once at each edge between consecutive real bins (float64), differenced.
    Ids that are no real bin get -inf (so does a bin whose mass is below float64's reach)."""
    real = table[:, HI] > table[:, LO]
    edges = torch.cat([table[real, LO], table[real, HI][-1:]]).double()
    logw, mu, sigma = mixture_params(raw, k)
    cdf = torch.special.ndtr((edges[None, :, None] - mu.double()[:, None, :]) / sigma.double()[:, None, :])
    mass = ((cdf[:, 1:] - cdf[:, :-1]).clamp_min(0.0) * logw.double().exp()[:, None, :]).sum(-1)
    out = torch.full((raw.shape[0], table.shape[0]), float("-inf"), dtype=torch.float64, device=raw.device)
    out[:, real] = torch.log(mass)
    return out.float()


def init_mixture_head(head: torch.nn.Linear, k: int) -> None:
    """Start as a mixture of ``k`` unit Gaussians spread over [-1.5, 1.5] (about the data's
    marginal on the normal-score axis)."""
    with torch.no_grad():
        head.bias.zero_()
        if k > 1:
            head.bias[k:2 * k] = torch.linspace(-1.5, 1.5, k)
