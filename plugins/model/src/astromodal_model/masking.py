"""4M-style masking: per row, Dirichlet splits of an input and a target budget over its modalities.

For every row, the keys that hold at least one real token share the input budget in
proportions drawn from a symmetric Dirichlet(alpha); the target budget is split the same way
(an independent draw) over the tokens not chosen as inputs. Randomness comes from a generator
seeded by ``(seed, step, row id)``, so a row is masked the same way whatever process or data
loader worker handles it (single-process and DDP training see the same batches).

``focus`` keys are the ones a user will ask :meth:`AstroModel.predict` for: with probability
``focus_prob`` a row holding any of them takes all their tokens (up to the target budget) as
targets and draws its inputs from its other keys only, an equal share of the input budget per
key: the selection rule of ``predict`` (within the training input budget), with every focus key
hidden, as when they are all unknown at prediction time.

Rows whose keys are all scalars (a catalogue: one token per key) take a vectorised path: every
key holds one token, so the Dirichlet split over keys reduces to choosing which keys are inputs
and which targets; both are uniform random choices (of the budgets' sizes) drawn from a hash of
``(seed, step, row id, key)``, so they too follow the row id, not its place in a batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from astromodal_core.sampling import hash_keys

VAL_STEP = 2**32 - 1  # the "step" used for the fixed masks of validation rows


def row_rng(seed: int, step: int, row_id: int) -> np.random.Generator:
    """The generator for one row at one step (order- and process-independent)."""
    u = int(np.int64(row_id).view(np.uint64))
    return np.random.default_rng([int(seed), int(step) & 0xFFFFFFFF, u & 0xFFFFFFFF, u >> 32])


def allocate(budget: int, weights: np.ndarray, caps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integer counts summing to min(budget, caps.sum()), about ``weights * budget``, capped."""
    n = np.zeros(len(caps), dtype=np.int64)
    remaining = int(min(budget, caps.sum()))
    while remaining > 0:
        free = caps > n
        w = np.where(free, weights, 0.0)
        w = w / w.sum() if w.sum() > 0 else free / free.sum()
        add = np.minimum(np.floor(w * remaining).astype(np.int64), caps - n)
        if add.sum() == 0:
            add[rng.choice(len(caps), p=w)] = 1
        n += add
        remaining -= int(add.sum())
    return n


def split_budgets(n_tokens: int, input_budget: int, target_budget: int) -> tuple[int, int]:
    """Input and target budgets for a row holding ``n_tokens`` real tokens.

    A row with fewer tokens than both budgets together shares them in the budgets' ratio,
    keeping at least one input and (with two or more tokens) at least one target.
    """
    if n_tokens >= input_budget + target_budget:
        return input_budget, target_budget
    if n_tokens < 2:
        return n_tokens, 0
    b_in = int(round(n_tokens * input_budget / (input_budget + target_budget)))
    b_in = min(max(b_in, 1), n_tokens - 1)
    return b_in, min(target_budget, n_tokens - b_in)


def mask_batch(
    ids: np.ndarray,
    dense: Mapping[str, np.ndarray],
    key_names: Sequence[str],
    *,
    input_budget: int,
    target_budget: int,
    alpha: float = 1.0,
    seed: int = 0,
    step: int = 0,
    focus: Sequence[str] = (),
    focus_prob: float = 0.0,
) -> dict[str, np.ndarray]:
    """A training batch: ``enc_*`` (B, E) and ``dec_*`` (B, T) arrays (see ``AstroModel.loss_terms``).

    ``dense[key]`` is (B, L) with -1 where a token is absent.
    """
    index = {k: i for i, k in enumerate(key_names)}
    names = [k for k in dense if k in index]
    focus_set = set(focus)
    B = len(ids)
    if names and all(dense[k].shape[1] == 1 for k in names):
        return _mask_scalar_batch(np.asarray(ids), dense, names, index, input_budget=input_budget,
                                  target_budget=target_budget, seed=seed, step=step,
                                  focus=focus_set, focus_prob=focus_prob)
    enc_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    dec_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for i in range(B):
        rng = row_rng(seed, step, int(ids[i]))
        avail = [(k, np.flatnonzero(dense[k][i] >= 0)) for k in names]
        avail = [(k, p) for k, p in avail if len(p)]
        if not avail:
            enc_rows.append((np.zeros(0, np.int64),) * 3)
            dec_rows.append((np.zeros(0, np.int64),) * 3)
            continue
        caps = np.array([len(p) for _, p in avail])
        ones = np.full(len(avail), float(alpha))
        focused = np.array([k in focus_set for k, _ in avail])
        if focus_set and focus_prob > 0 and rng.random() < focus_prob and focused.any() and not focused.all():
            # predict the focus keys from an equal share of every other key, as predict() does
            n_tgt = allocate(target_budget, focused.astype(float), np.where(focused, caps, 0), rng)
            n_in = allocate(input_budget, (~focused).astype(float), np.where(focused, 0, caps), rng)
            perms = [rng.permutation(p) for _, p in avail]
        else:
            b_in, b_tgt = split_budgets(int(caps.sum()), input_budget, target_budget)
            n_in = allocate(b_in, rng.dirichlet(ones), caps, rng)
            perms = [rng.permutation(p) for _, p in avail]
            n_tgt = allocate(b_tgt, rng.dirichlet(ones), caps - n_in, rng)
        ek, ep, et, dk, dp, dt = [], [], [], [], [], []
        for (k, _), perm, a, b in zip(avail, perms, n_in, n_tgt):
            row = dense[k][i]
            src, tgt = perm[:a], perm[a : a + b]
            ek.append(np.full(a, index[k]))
            ep.append(src)
            et.append(row[src])
            dk.append(np.full(b, index[k]))
            dp.append(tgt)
            dt.append(row[tgt])
        enc_rows.append((np.concatenate(ek), np.concatenate(ep), np.concatenate(et)))
        dec_rows.append((np.concatenate(dk), np.concatenate(dp), np.concatenate(dt)))
    enc = _pad(enc_rows)
    dec = _pad(dec_rows)
    return {
        "enc_key": enc[0], "enc_pos": enc[1], "enc_tok": enc[2], "enc_valid": enc[3],
        "dec_key": dec[0], "dec_pos": dec[1], "dec_tgt": dec[2], "dec_valid": dec[3],
    }


def _pad(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    width = max(1, max(len(r[0]) for r in rows))
    B = len(rows)
    k = np.zeros((B, width), np.int64)
    p = np.zeros((B, width), np.int64)
    t = np.zeros((B, width), np.int64)
    valid = np.zeros((B, width), bool)
    for i, (rk, rp, rt) in enumerate(rows):
        n = len(rk)
        k[i, :n], p[i, :n], t[i, :n], valid[i, :n] = rk, rp, rt, True
    return k, p, t, valid


def _uniforms(ids: np.ndarray, seed: int, step: int, n: int, purpose: str) -> np.ndarray:
    """(B, n) uniforms in [0, 1) from a hash of (seed, step, row id, column): one stream per
    ``purpose``."""
    sub = np.arange(n, dtype=np.uint64)[None, :]
    h = hash_keys(ids.astype(np.int64)[:, None], seed, salt=f"astromodal_model.mask:{purpose}:{int(step)}", sub=sub)
    return (h >> np.uint64(11)).astype(np.float64) / 2.0**53


def _first(chosen: np.ndarray, score: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per row, the ``count`` entries of ``chosen`` with the lowest ``score``."""
    s = np.where(chosen, score, np.inf)
    rank = np.argsort(np.argsort(s, axis=1, kind="stable"), axis=1, kind="stable")
    return chosen & (rank < count[:, None])


def _compact(sel: np.ndarray, key_idx: np.ndarray, tok: np.ndarray) -> tuple[np.ndarray, ...]:
    """Selected (row, key) slots packed to the front of each row, in key order."""
    B = sel.shape[0]
    width = max(1, int(sel.sum(1).max()) if B else 1)
    order = np.argsort(~sel, axis=1, kind="stable")[:, :width]
    valid = np.take_along_axis(sel, order, 1)
    k = np.where(valid, key_idx[order], 0).astype(np.int64)
    t = np.where(valid, np.take_along_axis(tok, order, 1), 0).astype(np.int64)
    return k, np.zeros((B, width), np.int64), t, valid


def _mask_scalar_batch(
    ids: np.ndarray, dense: Mapping[str, np.ndarray], names: Sequence[str], index: Mapping[str, int], *,
    input_budget: int, target_budget: int, seed: int, step: int, focus: set[str], focus_prob: float,
) -> dict[str, np.ndarray]:
    """:func:`mask_batch` for rows whose keys are all scalars (vectorised; see the module)."""
    tok = np.stack([np.asarray(dense[k])[:, 0] for k in names], axis=1).astype(np.int64)
    key_idx = np.array([index[k] for k in names], dtype=np.int64)
    present = tok >= 0
    n = present.sum(1)
    K = len(names)
    is_focus = np.array([k in focus for k in names])
    u_in, u_tgt = _uniforms(ids, seed, step, K, "in"), _uniforms(ids, seed, step, K, "target")
    # plain 4M rows: split_budgets, then uniform choices of input keys and target keys
    full = n >= input_budget + target_budget
    b_in = np.clip(np.round(n * input_budget / (input_budget + target_budget)), 1, np.maximum(n - 1, 1))
    b_in = np.where(full, input_budget, np.where(n < 2, n, b_in)).astype(np.int64)
    b_tgt = np.where(full, target_budget, np.where(n < 2, 0, np.minimum(target_budget, n - b_in)))
    enc = _first(present, u_in, b_in)
    dec = _first(present & ~enc, u_tgt, b_tgt)
    if focus and focus_prob > 0 and is_focus.any():
        u_focus = _uniforms(ids, seed, step, 1, "focus")[:, 0]
        has_focus = (present & is_focus).any(1)
        has_other = (present & ~is_focus).any(1)
        rows = (u_focus < focus_prob) & has_focus & has_other
        f_dec = _first(present & is_focus, u_tgt, np.full(len(ids), target_budget))
        f_enc = _first(present & ~is_focus, u_in, np.full(len(ids), input_budget))
        enc = np.where(rows[:, None], f_enc, enc)
        dec = np.where(rows[:, None], f_dec, dec)
    ek, ep, et, ev = _compact(enc, key_idx, tok)
    dk, dp, dt, dv = _compact(dec, key_idx, tok)
    return {
        "enc_key": ek, "enc_pos": ep, "enc_tok": et, "enc_valid": ev,
        "dec_key": dk, "dec_pos": dp, "dec_tgt": dt, "dec_valid": dv,
    }
