"""AstroModel: a 4M / AION-style encoder-decoder assembled from a fitted tokenizer set or a token
store, and checked against the tokens it meets (strict by default)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from astromodal_core.errors import CodecFormatError, DataError
from astromodal_core.modality import TokenKey

from .batching import ABSENT, dense_batch
from .config import LEGACY_ORDINAL, ModelConfig
from .errors import IncompatibleKeyError, UnknownTokenKeyError
from .keys import (
    KeySpec,
    check_fingerprints,
    check_keys_match,
    key_length,
    keys_from_json,
    keys_to_json,
    resolve_token_keys,
    select_keys,
    tokenizer_fingerprints,
)
from .layers import DecoderBlock, EncoderBlock, key_positions
from .ordinal import (
    HI,
    LO,
    all_bin_log_probs,
    bin_log_probs,
    init_mixture_head,
    input_features,
    ordinal_table,
)

#: 2: ordinal keys as values (value inputs, mixture heads, their bin tables among the weights)
MODEL_FORMAT_VERSION = 2
#: the lowest log probability a mixture head's target counts with (an id that is no real bin)
MIN_LOG_PROB = -100.0
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
Generator = torch.Generator | int | None


def _generator(generator: Generator) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    return torch.Generator().manual_seed(0 if generator is None else int(generator))


def _attn_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, S) validity -> SDPA boolean mask (B, 1, 1, S); a row with nothing valid sees slot 0."""
    valid = valid.clone()
    empty = ~valid.any(dim=1)
    if bool(empty.any()):
        valid[empty, 0] = True
    return valid[:, None, None, :]


class AstroModel(nn.Module):
    """Encoder-decoder over the tokens of every key it was built for.

    One embedding table and one output head per token key (sizes from the key's
    ``vocab_size``), a learned modality embedding per key, fixed positions per layout (none
    for scalars, 1-D sinusoidal for sequence and ragged keys, 2-D for grids). A key's
    ``mask_token`` and padding are absent tokens: never embedded, never targets.

    ``fingerprints`` (``{token key: fingerprint}``) and ``tokenizers`` (``{tokenizer name:
    fingerprint}``) record which fitted tokenizers made the training tokens; they are saved
    with the model and checked whenever it meets tokens (see :meth:`from_pretrained`).
    Build with :meth:`from_tokenizer_set` or :meth:`from_store` to take keys, vocabularies and
    fingerprints from the fitted state.

    Ordinal keys (``TokenKey.ordinal``) are values (see :mod:`astromodal_model.ordinal` and
    :class:`ModelConfig`): ``ordinal_values`` (``{key: token_values}``, which
    :meth:`from_tokenizer_set` takes from the fitted tokenizers) gives their physical values
    as inputs; their bin tables are buffers saved with the weights.
    """

    def __init__(
        self,
        config: ModelConfig,
        token_keys: Mapping[str, TokenKey],
        *,
        fingerprints: Mapping[str, str] | None = None,
        tokenizers: Mapping[str, str] | None = None,
        ordinal_values: Mapping[str, np.ndarray] | None = None,
    ):
        super().__init__()
        if not token_keys:
            raise ValueError("AstroModel needs at least one token key")
        self.config = config
        self.token_keys: dict[str, TokenKey] = dict(token_keys)
        self.fingerprints: dict[str, str] = dict(fingerprints or {})
        self.tokenizers: dict[str, str] = dict(tokenizers or {})
        self.key_names: list[str] = list(self.token_keys)
        self.key_index: dict[str, int] = {k: i for i, k in enumerate(self.key_names)}
        d = config.dim
        ordinal = [n for n, k in self.token_keys.items() if k.ordinal]
        self.value_keys = ordinal if config.ordinal_inputs == "value" else []
        self.mixture_keys = ordinal if config.ordinal_head == "mixture" else []
        values = dict(ordinal_values or {})
        unknown = sorted(set(values) - set(ordinal))
        if unknown:
            raise ValueError(f"ordinal_values given for {unknown[0]!r}, which is not an ordinal token key of the model")
        self.ordinal_tables = nn.Module()
        for n in dict.fromkeys(self.value_keys + self.mixture_keys):
            v = values.get(n)
            table = torch.from_numpy(ordinal_table(self.token_keys[n], None if v is None else np.asarray(v)))
            self.ordinal_tables.register_buffer(n, table)
        self.token_embed = nn.ModuleDict(
            {n: nn.Embedding(k.vocab_size, d) for n, k in self.token_keys.items() if n not in self.value_keys}
        )
        n_feat = config.ordinal_features
        if config.ordinal_inputs == "value":
            self.value_embed = nn.ModuleDict(
                {n: nn.Sequential(nn.Linear(2, d), nn.GELU(), nn.Linear(d, d)) for n in self.value_keys}
            )
        else:
            self.value_embed = nn.ModuleDict(
                {n: nn.Linear(n_feat, d, bias=False) for n in ordinal if n_feat}
            )
        self.modality_embed = nn.Embedding(len(self.key_names), d)
        tables = [key_positions(k, d) for k in self.token_keys.values()]
        offsets = np.cumsum([0] + [len(t) for t in tables[:-1]])
        self.register_buffer("pos_table", torch.from_numpy(np.concatenate(tables)), persistent=False)
        self.register_buffer("pos_offset", torch.as_tensor(offsets, dtype=torch.long), persistent=False)
        self.query = nn.Parameter(torch.zeros(d))
        args = (d, config.num_heads, config.mlp_ratio, config.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(*args) for _ in range(config.encoder_depth))
        self.encoder_norm = nn.LayerNorm(d)
        self.decoder = nn.ModuleList(DecoderBlock(*args) for _ in range(config.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d)
        kmix = config.mixture_components
        self.heads = nn.ModuleDict({
            n: nn.Linear(d, 3 * kmix if n in self.mixture_keys else k.vocab_size) for n, k in self.token_keys.items()
        })
        self.apply(self._init)
        nn.init.trunc_normal_(self.query, std=0.02)
        for n in self.mixture_keys:
            init_mixture_head(self.heads[n], kmix)
        for n in self.value_keys:  # unit-scale value features: torch's default init keeps them O(1)
            for layer in self.value_embed[n]:
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    # construction ---------------------------------------------------------------------------
    @classmethod
    def from_tokenizer_set(
        cls,
        tokenizers: Any,
        config: ModelConfig | Mapping[str, Any] | str | None = None,
        *,
        token_keys: Sequence[str] | None = None,
    ) -> AstroModel:
        """Build from a fitted tokenizer set (a :class:`TokenizerSet` or its directory).

        Each member is resolved through the registry by its registered name and loaded (its
        fingerprint checked against the manifest); the keys and vocabularies are those of the
        fitted tokenizers, never a plugin's defaults. ``token_keys`` narrows them (names).
        The model records every key's fingerprint and every member's.
        """
        tset = as_tokenizer_set(tokenizers)
        where = f"tokenizer set {tset.directory}"
        names = list(select_keys(tset.token_keys(), token_keys, where))
        owners = {k: tset.owner(k) for k in names}
        fitted: dict[str, TokenKey] = {}
        for member in dict.fromkeys(owners.values()):
            fitted.update({k.name: k for k in tset.load(member).token_keys})
        missing = [k for k in names if k not in fitted]
        if missing:
            raise CodecFormatError(
                f"{where}: the manifest lists token key {missing[0]!r} for {owners[missing[0]]!r}, "
                "but the fitted tokenizer does not write it"
            )
        key_fp = tset.key_fingerprints()
        values: dict[str, np.ndarray] = {}
        for k in names:
            if fitted[k].ordinal:
                v = _fitted_values(tset.load(owners[k]), fitted[k])
                if v is not None:
                    values[k] = v
        return cls(
            _as_config(config), {k: fitted[k] for k in names},
            fingerprints={k: key_fp[k] for k in names},
            tokenizers={m: tset.fingerprints()[m] for m in dict.fromkeys(owners.values())},
            ordinal_values=values,
        )

    @classmethod
    def from_store(
        cls,
        store: str | os.PathLike[str],
        config: ModelConfig | Mapping[str, Any] | str | None = None,
        *,
        token_keys: Sequence[str] | None = None,
    ) -> AstroModel:
        """Build from the keys a token store records (the fitted keys of the tokenizers that
        wrote it), recording its fingerprints. ``token_keys`` narrows them (names)."""
        keys, key_fp, tok_fp = store_record(store)
        keys = select_keys(keys, token_keys, f"token store {store}")
        return cls(_as_config(config), keys, **_provenance(keys, key_fp, tok_fp))

    @classmethod
    def from_registry(
        cls,
        config: ModelConfig | Mapping[str, Any] | str | None = None,
        token_keys: KeySpec = None,
        *,
        fingerprints: Mapping[str, str] | None = None,
    ) -> AstroModel:
        """Build from registered token keys: every one (None), names, or TokenKey records.

        Registered keys carry each plugin's *default* vocabulary, not a fitted one: use
        :meth:`from_tokenizer_set` or :meth:`from_store` for a model of real tokens.
        ``config`` is a ModelConfig, a dict (optionally with ``preset``) or a preset name.
        """
        return cls(_as_config(config), resolve_token_keys(token_keys), fingerprints=fingerprints)

    @property
    def device(self) -> torch.device:
        return self.query.device

    def num_parameters(self, *, non_embedding: bool = False) -> int:
        """Parameter count; ``non_embedding`` leaves out token tables, value embeddings and
        output heads."""
        skip = ("token_embed.", "value_embed.", "heads.") if non_embedding else ()
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith(skip))

    # token layout ---------------------------------------------------------------------------
    def _flatten(self, dense: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Concatenate dense per-key tokens into (tok, key, pos, valid), each (B, N)."""
        toks, keys, poss = [], [], []
        for name, t in dense.items():
            B, L = t.shape
            toks.append(t)
            keys.append(torch.full((B, L), self.key_index[name], dtype=torch.long, device=t.device))
            poss.append(torch.arange(L, device=t.device).expand(B, L))
        tok = torch.cat(toks, 1)
        return tok, torch.cat(keys, 1), torch.cat(poss, 1), tok != ABSENT

    @staticmethod
    def select_tokens(
        tok: torch.Tensor,
        key: torch.Tensor,
        pos: torch.Tensor,
        valid: torch.Tensor,
        budget: int,
        generator: Generator = None,
    ) -> tuple[torch.Tensor, ...]:
        """Keep at most ``budget`` valid tokens per row, compacted to the front.

        Under budget, every valid token is kept in its input order. Over budget, the budget is
        shared equally among the keys present in the row, a key with fewer tokens than its
        share giving the rest to the others (round robin: every key's k-th token before any
        key's (k+1)-th; ties within a round broken at random); within a key the tokens are a
        seeded uniform sample. So a key with one token is kept whenever the budget allows one
        token per present key, however many tokens another key holds.
        """
        if budget < 1:
            raise ValueError(f"num_encoder_tokens must be >= 1, got {budget}")
        n_valid = valid.sum(1)
        over = int(n_valid.max()) > budget
        if over:
            B, N = tok.shape
            r = torch.rand(tok.shape, generator=_generator(generator), dtype=torch.float64).to(tok.device)
            # rank of each token inside its key, in random order (absent tokens form their own group)
            group = torch.where(valid, key, int(key.max()) + 1).to(torch.float64)
            by_key = torch.argsort(group * 2.0 + r, dim=1)
            sorted_group = torch.gather(group, 1, by_key)
            slot = torch.arange(N, device=tok.device).expand(B, N)
            starts = torch.ones_like(sorted_group, dtype=torch.bool)
            starts[:, 1:] = sorted_group[:, 1:] != sorted_group[:, :-1]
            first = torch.where(starts, slot, torch.zeros_like(slot)).cummax(1).values
            rank = torch.empty_like(slot).scatter_(1, by_key, slot - first)
            score = rank.to(torch.float64) + r + float(N + 1) * (~valid).to(torch.float64)
        else:
            score = (~valid).float()
        order = torch.sort(score, dim=1, stable=True).indices
        E = max(1, min(budget, int(n_valid.max())))
        idx = order[:, :E]
        return tuple(torch.gather(x, 1, idx) for x in (tok, key, pos, valid))

    def _embed(self, tok: torch.Tensor, key: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        B, S = tok.shape
        flat_tok, flat_key, flat_valid = tok.reshape(-1), key.reshape(-1), valid.reshape(-1)
        parts, where = [], []
        for k in torch.unique(flat_key[flat_valid]).tolist():
            sel = torch.nonzero(flat_valid & (flat_key == k)).squeeze(1)
            name = self.key_names[k]
            ids = flat_tok[sel]
            if name in self.value_keys:
                mlp = self.value_embed[name]
                feats = input_features(self.ordinal_table(name), ids)
                e = mlp(feats.to(mlp[0].weight.dtype))
            else:
                e = self.token_embed[name](ids)
            if name in self.value_embed and name not in self.value_keys:
                proj = self.value_embed[name]
                feats = ordinal_features(ids, self.token_keys[name], self.config.ordinal_features)
                e = e + proj(feats.to(proj.weight.dtype))
            parts.append(e)
            where.append(sel)
        x = torch.zeros(B * S, self.config.dim, device=tok.device, dtype=self.query.dtype)
        if parts:
            x = x.index_copy(0, torch.cat(where), torch.cat(parts).to(x.dtype))
        x = x.view(B, S, -1) + self._position(key, pos)
        return x * valid[..., None].to(x.dtype)

    def _position(self, key: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.pos_table[self.pos_offset[key] + pos] + self.modality_embed(key)

    def _encode(self, tok: torch.Tensor, key: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = self._embed(tok, key, pos, valid)
        mask = _attn_mask(valid)
        for block in self.encoder:
            x = block(x, mask)
        return self.encoder_norm(x)

    def _decode(
        self, context: torch.Tensor, ctx_valid: torch.Tensor, key: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        x = self.query.expand(*key.shape, -1) + self._position(key, pos)
        self_mask, ctx_mask = _attn_mask(valid), _attn_mask(ctx_valid)
        for block in self.decoder:
            x = block(x, self_mask, context, ctx_mask)
        return self.decoder_norm(x)

    def ordinal_table(self, name: str) -> torch.Tensor:
        """The (vocab, 5) bin table of an ordinal key (see :mod:`astromodal_model.ordinal`)."""
        return self.ordinal_tables.get_buffer(name)

    def _logits(self, name: str, h: torch.Tensor) -> torch.Tensor:
        """Head logits (log probabilities for a mixture head); the key's mask token and ids
        that are no real bin get -inf, so they are never predicted."""
        if name in self.mixture_keys:
            table = self.ordinal_table(name)
            raw = self.heads[name](h)
            flat = raw.reshape(-1, raw.shape[-1])
            chunk = max(1, 2**21 // max(1, table.shape[0] * self.config.mixture_components))
            parts = [all_bin_log_probs(flat[i:i + chunk], table, self.config.mixture_components)
                     for i in range(0, max(1, flat.shape[0]), chunk)]
            logits = torch.cat(parts).reshape(*raw.shape[:-1], table.shape[0])
        else:
            logits = self.heads[name](h).float()
        mt = self.token_keys[name].mask_token
        if mt is not None:
            logits[..., mt] = float("-inf")
        return logits

    # public API (seed 001 shape) ------------------------------------------------------------
    def _inputs(self, input_tokens: Mapping[str, Any], exclude: Sequence[str] = ()) -> dict[str, torch.Tensor]:
        dense = dense_batch(self.token_keys, input_tokens, device=self.device)
        return {k: v for k, v in dense.items() if k not in exclude}

    def encode(
        self,
        input_tokens: Mapping[str, Any],
        num_encoder_tokens: int = 600,
        *,
        generator: Generator = None,
        return_mask: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encoder embeddings (B, S, dim), S = min(num_encoder_tokens, most valid tokens in a row).

        Padding slots (rows with fewer tokens) are zero vectors; ``return_mask=True`` also
        returns the (B, S) boolean mask, True for real tokens. Use :meth:`embed` for a pooled
        embedding that ignores padding. Over budget, tokens are sampled with ``generator``
        (a torch.Generator or an int seed; None = seed 0).
        """
        dense = self._inputs(input_tokens)
        sel = self.select_tokens(*self._flatten(dense), num_encoder_tokens, generator)
        out = self._encode(*sel)
        valid = sel[3]
        out = out * valid[..., None].to(out.dtype)
        return (out, valid) if return_mask else out

    def embed(
        self, input_tokens: Mapping[str, Any], num_encoder_tokens: int = 600, *, generator: Generator = None
    ) -> torch.Tensor:
        """Pooled embedding (B, dim): the mean over real tokens only (padding ignored)."""
        out, valid = self.encode(input_tokens, num_encoder_tokens, generator=generator, return_mask=True)
        w = valid.to(out.dtype)[..., None]
        return (out * w).sum(1) / w.sum(1).clamp_min(1.0)

    def forward(
        self,
        input_tokens: Mapping[str, Any],
        target_mask: Mapping[str, Any] | None = None,
        num_encoder_tokens: int = 600,
        *,
        generator: Generator = None,
    ) -> dict[str, torch.Tensor]:
        """Logits ``{key: (B, n_target, vocab)}`` for the positions asked in ``target_mask``.

        ``target_mask[key]`` has shape (B, n) (or (B, H, W) for a grid) with n <= the key's
        length: entries equal to 0 ask for a prediction at positions 0..n-1, non-zero entries
        are skipped (their logits are returned but nothing attends to them). None asks for
        every position of every key absent from ``input_tokens``.
        """
        dense = self._inputs(input_tokens)
        B = next(iter(dense.values())).shape[0]
        if target_mask is None:
            target_mask = {
                n: torch.zeros(B, key_length(k)) for n, k in self.token_keys.items() if n not in dense
            }
        keys_, poss, valids, sizes = [], [], [], []
        for name, tm in target_mask.items():
            if name not in self.token_keys:
                raise UnknownTokenKeyError(
                    f"target_mask: unknown token key {name!r}; the model knows {sorted(self.token_keys)}"
                )
            tm = torch.as_tensor(tm, device=self.device).reshape(B, -1) if _rows(tm) == B else None
            if tm is None:
                raise DataError(f"target_mask: token key {name!r} does not have {B} rows")
            n = tm.shape[1]
            if not 1 <= n <= key_length(self.token_keys[name]):
                raise DataError(
                    f"target_mask: token key {name!r}: {n} target positions, the key has "
                    f"{key_length(self.token_keys[name])}"
                )
            keys_.append(torch.full((B, n), self.key_index[name], dtype=torch.long, device=self.device))
            poss.append(torch.arange(n, device=self.device).expand(B, n))
            valids.append(tm == 0)
            sizes.append((name, n))
        if not sizes:
            raise DataError("target_mask: no target keys given")
        sel = self.select_tokens(*self._flatten(dense), num_encoder_tokens, generator)
        context = self._encode(*sel)
        h = self._decode(context, sel[3], torch.cat(keys_, 1), torch.cat(poss, 1), torch.cat(valids, 1))
        out, start = {}, 0
        for name, n in sizes:
            out[name] = self._logits(name, h[:, start : start + n])
            start += n
        return out

    @torch.no_grad()
    def predict(
        self,
        input_tokens: Mapping[str, Any],
        target: str,
        num_encoder_tokens: int = 600,
        *,
        generator: Generator = None,
    ) -> torch.Tensor:
        """Probabilities (B, n, vocab) over the target key's tokens at every position.

        The target key itself is dropped from the inputs; the mask token has probability 0.
        """
        if target not in self.token_keys:
            raise UnknownTokenKeyError(f"unknown target key {target!r}; the model knows {sorted(self.token_keys)}")
        inputs = {k: v for k, v in input_tokens.items() if k != target}
        if not inputs:
            raise DataError(f"predict: no input tokens besides the target {target!r}")
        B = _rows(next(iter(inputs.values())))
        n = key_length(self.token_keys[target])
        logits = self.forward(inputs, {target: torch.zeros(B, n)}, num_encoder_tokens, generator=generator)
        return torch.softmax(logits[target], dim=-1)

    @torch.no_grad()
    def predict_value(
        self,
        input_tokens: Mapping[str, Any],
        target: str,
        codec: Any,
        num_encoder_tokens: int = 600,
        *,
        generator: Generator = None,
        allow_mismatch: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the predicted distribution in physical units.

        ``codec`` gives each token id a physical value (see :func:`token_values`); a tokenizer
        (or set) must be the one the model records for ``target`` (``allow_mismatch`` warns
        instead). Returns arrays of shape (B,) for a scalar key, (B, n) otherwise.
        """
        from .values import distribution_moments, token_values, values_source_fingerprint

        if target not in self.token_keys:
            raise UnknownTokenKeyError(f"unknown target key {target!r}; the model knows {sorted(self.token_keys)}")
        fp = values_source_fingerprint(codec, target)
        if fp is not None:
            self.check_fingerprints({target: fp}, where=f"the tokenizer giving the values of {target!r}",
                                    allow_mismatch=allow_mismatch)
        values = token_values(codec, self.token_keys[target])
        probs = self.predict(input_tokens, target, num_encoder_tokens, generator=generator)
        mean, std = distribution_moments(probs.cpu().numpy(), values, self.token_keys[target])
        if self.token_keys[target].layout == "scalar":
            return mean[:, 0], std[:, 0]
        return mean, std

    # training path --------------------------------------------------------------------------
    def loss_terms(
        self, batch: Mapping[str, torch.Tensor], *, ordinal_smoothing: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-key summed negative log-likelihood (cross entropy) and target counts (K,) for
        a masked training batch.

        ``batch`` holds ``enc_tok, enc_key, enc_pos, enc_valid`` (B, E) and
        ``dec_key, dec_pos, dec_valid, dec_tgt`` (B, T), as made by :mod:`astromodal_model.masking`.
        ``ordinal_smoothing`` > 0 trains ordinal keys against a Gaussian of that width (in ids)
        around the true id instead of the id alone, so a near miss costs less than a far one
        (keys with a mixture head are smooth already and ignore it).
        """
        ctx = self._encode(batch["enc_tok"], batch["enc_key"], batch["enc_pos"], batch["enc_valid"])
        h = self._decode(ctx, batch["enc_valid"], batch["dec_key"], batch["dec_pos"], batch["dec_valid"])
        K = len(self.key_names)
        sums = torch.zeros(K, device=h.device, dtype=torch.float32)
        counts = torch.zeros(K, device=h.device, dtype=torch.float32)
        dk, dv, tgt = batch["dec_key"], batch["dec_valid"], batch["dec_tgt"]
        for k in torch.unique(dk[dv]).tolist():
            sel = dv & (dk == k)
            name = self.key_names[k]
            if name in self.mixture_keys:
                table = self.ordinal_table(name)
                t = tgt[sel]
                logp = bin_log_probs(self.heads[name](h[sel]), table[t, LO][:, None], table[t, HI][:, None],
                                     self.config.mixture_components)[:, 0]
                loss = -logp.clamp_min(MIN_LOG_PROB).sum()
                sums = sums.index_add(0, torch.tensor([k], device=h.device), loss[None])
                counts[k] = sel.sum()
                continue
            logits = self.heads[name](h[sel]).float()
            if ordinal_smoothing > 0 and self.token_keys[name].ordinal:
                soft = ordinal_targets(tgt[sel], self.token_keys[name], ordinal_smoothing)
                loss = F.cross_entropy(logits, soft, reduction="sum")
            else:
                loss = F.cross_entropy(logits, tgt[sel], reduction="sum")
            sums = sums.index_add(0, torch.tensor([k], device=h.device), loss[None])
            counts[k] = sel.sum()
        return sums, counts

    # saving ---------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (keys, vocab sizes, fingerprints)."""
        from astromodal_core.serialize import atomic_path, save_safetensors

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {k: v.detach().float().cpu().numpy() for k, v in self.state_dict().items()}
        fp = save_safetensors(directory / WEIGHTS_FILE, arrays, {"kind": "astromodal_model"})
        config = {
            "format_version": MODEL_FORMAT_VERSION,
            "model": self.config.to_dict(),
            "token_keys": keys_to_json(self.token_keys),
            "key_order": self.key_names,
            "vocab_sizes": {n: k.vocab_size for n, k in self.token_keys.items()},
            "fingerprints": self.fingerprints,
            "tokenizers": self.tokenizers,
            "weights_fingerprint": fp,
        }
        with atomic_path(directory / CONFIG_FILE, suffix=".json") as tmp:
            tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
        return directory

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike[str],
        *,
        tokens: str | os.PathLike[str] | None = None,
        tokenizers: Any = None,
        token_keys: KeySpec = None,
        fingerprints: Mapping[str, str] | None = None,
        allow_mismatch: bool = False,
        strict: bool = True,
        map_location: str | torch.device = "cpu",
    ) -> AstroModel:
        """Load a model saved by :meth:`save_pretrained`, checked against what it will read.

        Checks (any combination):

        - ``tokens``: a token store: its keys shared with the model must have the same records,
          and the same tokenizer fingerprints;
        - ``tokenizers``: a fitted :class:`TokenizerSet` (or its directory): likewise;
        - ``token_keys``: names or TokenKey records (names resolve in the registry): every key
          of the model must be there with the same record;
        - ``fingerprints``: ``{token key or tokenizer name: fingerprint}``: each named one the
          model records must match.

        A different record raises :class:`IncompatibleKeyError` naming the key. A different
        fingerprint (or one recorded on one side only) raises it naming the key and both
        fingerprints, unless ``allow_mismatch=True``, which warns naming the keys.
        ``strict=False`` skips the checks (to inspect a model; every embed / predict function
        checks the store it reads again). With no source given nothing is checked here.
        """
        from astromodal_core.serialize import load_safetensors

        directory = Path(directory)
        cfg_path = directory / CONFIG_FILE
        if not cfg_path.is_file():
            raise CodecFormatError(f"{cfg_path}: file not found (not a saved astromodal model)")
        try:
            cfg = json.loads(cfg_path.read_text())
            version = int(cfg["format_version"])
            recorded = keys_from_json(cfg["token_keys"])
            recorded = {k: recorded[k] for k in cfg["key_order"]}
            model_cfg = dict(cfg["model"])
            if version < 2:  # saved before ordinal keys were values
                for k, v in LEGACY_ORDINAL.items():
                    model_cfg.setdefault(k, v)
            mconf = ModelConfig.from_dict(model_cfg)
            rec_fp = {str(k): str(v) for k, v in dict(cfg.get("fingerprints") or {}).items()}
            rec_tok = {str(k): str(v) for k, v in dict(cfg.get("tokenizers") or {}).items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise CodecFormatError(f"{cfg_path}: unreadable model config ({exc})") from exc
        if version > MODEL_FORMAT_VERSION:
            raise CodecFormatError(
                f"{cfg_path}: format_version {version} is newer than this astromodal-model reads "
                f"({MODEL_FORMAT_VERSION}); upgrade astromodal-model"
            )
        model = cls(mconf, recorded, fingerprints=rec_fp, tokenizers=rec_tok)
        if strict:
            if token_keys is not None:
                check_keys_match(recorded, resolve_token_keys(token_keys), where="the given token keys")
            if fingerprints is not None:
                model.check_fingerprints(fingerprints, where="the fingerprints given", allow_mismatch=allow_mismatch)
            if tokens is not None:
                keys, key_fp, _ = store_record(tokens)
                model.check_compatible(keys, key_fp, f"token store {tokens}", allow_mismatch=allow_mismatch)
            if tokenizers is not None:
                tset = as_tokenizer_set(tokenizers)
                model.check_compatible(
                    tset.token_keys(), tset.key_fingerprints(), f"tokenizer set {tset.directory}",
                    allow_mismatch=allow_mismatch,
                )
        arrays, _ = load_safetensors(directory / WEIGHTS_FILE, expected_fingerprint=cfg.get("weights_fingerprint"))
        state = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CodecFormatError(
                f"{directory / WEIGHTS_FILE}: weights do not match config.json "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return model.to(map_location)

    def check_compatible(
        self,
        token_keys: Mapping[str, TokenKey],
        fingerprints: Mapping[str, str] | None,
        where: str,
        *,
        allow_mismatch: bool = False,
    ) -> list[str]:
        """Check the keys the model shares with ``token_keys`` (e.g. a store's) and their
        fingerprints (``{key: fingerprint}``).

        No shared key, or a different key record, raises :class:`IncompatibleKeyError`; a
        different fingerprint (or one recorded on one side only) raises it naming the key and
        both fingerprints, or warns with ``allow_mismatch``. Returns the keys whose
        fingerprints differ (allowed).
        """
        shared = [n for n in self.token_keys if n in token_keys]
        if not shared:
            raise IncompatibleKeyError(
                f"{where} has none of the model's token keys; it has {sorted(token_keys)}, "
                f"the model {sorted(self.token_keys)}"
            )
        check_keys_match({n: self.token_keys[n] for n in shared}, token_keys, where=where)
        return check_fingerprints(
            self.fingerprints, dict(fingerprints or {}), shared, where=where, allow_mismatch=allow_mismatch
        )

    def check_fingerprints(
        self, fingerprints: Mapping[str, str], *, where: str, allow_mismatch: bool = False
    ) -> list[str]:
        """Check ``{token key or tokenizer name: fingerprint}`` against what the model records;
        only the names given are compared (see :meth:`check_compatible` for the outcome)."""
        keys = [n for n in fingerprints if n in self.token_keys]
        bad = check_fingerprints(self.fingerprints, fingerprints, keys, where=where, allow_mismatch=allow_mismatch)
        names = [n for n in fingerprints if n in self.tokenizers and n not in self.token_keys]
        return bad + check_fingerprints(
            self.tokenizers, fingerprints, names, where=where, allow_mismatch=allow_mismatch, what="tokenizer"
        )


def ordinal_features(ids: torch.Tensor, key: TokenKey, n_features: int) -> torch.Tensor:
    """Fixed Fourier features (n, n_features) of an ordinal key's ids scaled to [0, 1].

    Frequencies are log-spaced from half a turn over the whole range up to one turn per
    eight ids, so neighbouring ids get nearby features at every scale.
    """
    half = n_features // 2
    top = max(1, key.vocab_size - 1)
    u = ids.to(torch.float32) / top
    hi = max(1.0, top / 4.0)
    freq = math.pi * hi ** (torch.arange(half, device=ids.device, dtype=torch.float32) / max(1, half - 1))
    ang = u[:, None] * freq[None, :]
    out = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
    if out.shape[1] < n_features:
        out = F.pad(out, (0, n_features - out.shape[1]))
    return out


def ordinal_targets(target: torch.Tensor, key: TokenKey, width: float) -> torch.Tensor:
    """Soft targets (n, vocab): a Gaussian of ``width`` ids around each target, mask id excluded."""
    ids = torch.arange(key.vocab_size, device=target.device, dtype=torch.float32)
    w = torch.exp(-0.5 * ((ids[None, :] - target[:, None].float()) / width) ** 2)
    if key.mask_token is not None:
        w[:, key.mask_token] = 0.0
    return w / w.sum(1, keepdim=True)


def _fitted_values(tokenizer: Any, key: TokenKey) -> np.ndarray | None:
    """A fitted tokenizer's values of an ordinal key (``token_values``), or None when it has
    none (no value protocol, or it refuses the key)."""
    from .values import token_values

    if not callable(getattr(tokenizer, "token_values", None)):
        return None
    try:
        return token_values(tokenizer, key)
    except (DataError, NotImplementedError):
        return None


def _rows(value: Any) -> int:
    if isinstance(value, tuple):
        first = value[0]
        if getattr(first, "ndim", np.ndim(first)) == 1:  # (flat, indptr)
            return len(value[1]) - 1
        return len(first)
    return int(value.shape[0]) if hasattr(value, "shape") else len(value)


def as_tokenizer_set(tokenizers: Any) -> Any:
    """A :class:`~astromodal_core.tokenizer_set.TokenizerSet`, or one read from a directory."""
    from astromodal_core.tokenizer_set import TokenizerSet

    return tokenizers if isinstance(tokenizers, TokenizerSet) else TokenizerSet.read(tokenizers)


def store_record(store: str | os.PathLike[str]) -> tuple[dict[str, TokenKey], dict[str, str], dict[str, str]]:
    """A token store's ``(token keys, {key: fingerprint}, {tokenizer name: fingerprint})``."""
    from astromodal_core.store import store_metadata

    meta = store_metadata(store)
    key_fp = {str(k): str(v) for k, v in dict(meta.get("fingerprints") or {}).items()}
    return dict(meta["token_keys"]), key_fp, tokenizer_fingerprints(meta.get("tokenizers"))


def _provenance(
    keys: Mapping[str, TokenKey], key_fp: Mapping[str, str], tok_fp: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """The fingerprints of ``keys`` and of the tokenizers that wrote them."""
    fps = {k: key_fp[k] for k in keys if k in key_fp}
    return {"fingerprints": fps, "tokenizers": {n: f for n, f in tok_fp.items() if f in set(fps.values())}}


def _as_config(config: ModelConfig | Mapping[str, Any] | str | None) -> ModelConfig:
    if config is None:
        return ModelConfig.preset("tiny")
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, str):
        return ModelConfig.preset(config)
    return ModelConfig.from_dict(config)
