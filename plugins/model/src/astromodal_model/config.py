"""Model and training configuration: presets, validation, YAML loading."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from astromodal_core.errors import ConfigError

ORDINAL_INPUTS = ("value", "id")
ORDINAL_HEADS = ("mixture", "categorical")
#: what a saved model config without the ordinal settings means (models saved before them)
LEGACY_ORDINAL = {"ordinal_inputs": "id", "ordinal_head": "categorical"}


@dataclass(frozen=True)
class ModelConfig:
    """Transformer shape: width, encoder and decoder depth, heads, MLP ratio, dropout.

    Ordinal token keys (quantile bins: magnitudes, redshift, normalisations) are modelled as
    values, not symbols:

    - ``ordinal_inputs``: ``"value"`` embeds an ordinal token through a small MLP of its
      normal score among the key's bins and of its standardised physical value (when the
      model was assembled from fitted tokenizers, which give ``token_values``; else the score
      again); ``"id"`` (models saved before this existed) adds a projection of
      ``ordinal_features`` Fourier features of the id to a per-id embedding table.
    - ``ordinal_head``: ``"mixture"`` predicts a mixture of ``mixture_components`` Gaussians
      over the key's normal-score axis, integrated over each bin (a discretised, smooth
      distribution trained by its log-likelihood, a proper scoring rule); ``"categorical"``
      predicts one logit per id as for any other key.

    ``ordinal_features`` (``"id"`` inputs only) must be even (0: no Fourier features).
    """

    dim: int = 64
    encoder_depth: int = 2
    decoder_depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    ordinal_features: int = 16
    ordinal_inputs: str = "value"
    ordinal_head: str = "mixture"
    mixture_components: int = 8

    def __post_init__(self) -> None:
        if self.ordinal_inputs not in ORDINAL_INPUTS:
            raise ConfigError(
                f"model config: 'ordinal_inputs' must be one of {list(ORDINAL_INPUTS)}, got {self.ordinal_inputs!r}"
            )
        if self.ordinal_head not in ORDINAL_HEADS:
            raise ConfigError(
                f"model config: 'ordinal_head' must be one of {list(ORDINAL_HEADS)}, got {self.ordinal_head!r}"
            )
        if not isinstance(self.ordinal_features, int) or isinstance(self.ordinal_features, bool) \
                or self.ordinal_features < 0 or self.ordinal_features % 2:
            raise ConfigError(
                f"model config: 'ordinal_features' must be an even int >= 0, got {self.ordinal_features!r}"
            )
        for name in ("dim", "encoder_depth", "decoder_depth", "num_heads", "mixture_components"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"model config: {name!r} must be a positive int, got {v!r}")
        if self.dim % self.num_heads:
            raise ConfigError(
                f"model config: dim {self.dim} is not divisible by num_heads {self.num_heads}"
            )
        if not self.mlp_ratio > 0:
            raise ConfigError(f"model config: 'mlp_ratio' must be > 0, got {self.mlp_ratio!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model config: 'dropout' must be in [0, 1), got {self.dropout!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ModelConfig:
        """A named preset (``tiny``, ``small``, ``base``) with optional overrides."""
        if name not in PRESETS:
            raise ConfigError(f"unknown model preset {name!r}; presets: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Build from a dict; an optional ``preset`` key gives the defaults."""
        d = dict(d)
        preset = d.pop("preset", None)
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"model config: unknown key {unknown[0]!r}; known: {sorted(names)}")
        return cls.preset(preset, **d) if preset else cls(**d)


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"dim": 64, "encoder_depth": 2, "decoder_depth": 2, "num_heads": 4},
    "small": {"dim": 384, "encoder_depth": 6, "decoder_depth": 6, "num_heads": 6},
    "base": {"dim": 768, "encoder_depth": 12, "decoder_depth": 12, "num_heads": 12},
}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (the ``train:`` section of model.yaml, or its top level).

    ``focus_keys`` / ``focus_prob``: with probability ``focus_prob`` a row holding any focus
    key predicts those keys from its other keys (the setting :meth:`AstroModel.predict` uses);
    other rows are masked the 4M way. ``ordinal_smoothing``: width in ids of the Gaussian soft
    targets of ordinal keys (0: plain cross entropy); the training loss then includes the soft
    targets' own entropy, while validation reports plain cross entropy (it does not apply to
    keys with a mixture head, whose distribution is smooth already).

    Validation every ``val_every`` steps on the ``val_fraction`` rows; with focus keys, also
    on those rows with every focus key predicted from all other keys (``predict``'s setting).
    ``keep_best``: the saved model is the one with the lowest validation loss (the focus keys'
    mean when there are focus keys, else every key's mean), not the last; ``early_stopping``
    > 0 stops after that many validations without improvement. ``threads``: torch CPU
    threads while training (None: half the usable cores, at most 8, see
    :func:`astromodal_model.threads.default_threads`). ``compile``: ``torch.compile`` the
    transformer blocks (``auto``: on CUDA only). ``ema_decay`` > 0 (e.g. 0.999) keeps an
    exponential moving average of the weights; it is what is validated, kept and saved.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.05
    warmup_steps: int = 100
    grad_clip: float = 1.0
    input_budget: int = 256
    target_budget: int = 128
    dirichlet_alpha: float = 1.0
    focus_keys: list[str] | None = field(default=None)
    focus_prob: float = 0.5
    ordinal_smoothing: float = 0.0
    val_fraction: float = 0.1
    val_every: int = 100
    val_max_rows: int = 2048
    checkpoint_every: int = 500
    chunk_rows: int = 8192
    num_workers: int = 0
    seed: int = 0
    token_keys: list[str] | None = field(default=None)
    keep_best: bool = True
    early_stopping: int = 0
    threads: int | None = None
    compile: bool | str = "auto"
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.ema_decay, (int, float)) or isinstance(self.ema_decay, bool) \
                or not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"train config: 'ema_decay' must be in [0, 1), got {self.ema_decay!r}")
        if self.compile not in (True, False, "auto"):
            raise ConfigError(f"train config: 'compile' must be true, false or auto, got {self.compile!r}")
        if not isinstance(self.keep_best, bool):
            raise ConfigError(f"train config: 'keep_best' must be true or false, got {self.keep_best!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or isinstance(self.threads, bool)
                                         or self.threads < 1):
            raise ConfigError(f"train config: 'threads' must be a positive int or null, got {self.threads!r}")
        ints = ("steps", "batch_size", "input_budget", "target_budget", "val_every",
                "val_max_rows", "checkpoint_every", "chunk_rows")
        for name in ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"train config: {name!r} must be a positive int, got {v!r}")
        for name in ("warmup_steps", "num_workers", "seed", "early_stopping"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"train config: {name!r} must be an int >= 0, got {v!r}")
        for name in ("lr", "weight_decay", "grad_clip", "dirichlet_alpha", "min_lr_ratio",
                     "ordinal_smoothing"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"train config: {name!r} must be a number >= 0, got {v!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"train config: 'val_fraction' must be in [0, 1), got {self.val_fraction!r}")
        if not isinstance(self.focus_prob, (int, float)) or not 0.0 <= self.focus_prob <= 1.0:
            raise ConfigError(f"train config: 'focus_prob' must be in [0, 1], got {self.focus_prob!r}")
        for name in ("focus_keys", "token_keys"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, str) or not all(isinstance(k, str) for k in v)):
                raise ConfigError(f"train config: {name!r} must be a list of token key names, got {v!r}")
        if self.dirichlet_alpha <= 0:
            raise ConfigError("train config: 'dirichlet_alpha' must be > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"train config: unknown key {unknown[0]!r}; known: {sorted(names)}")
        return cls(**dict(d))


def split_config(data: Mapping[str, Any]) -> tuple[ModelConfig, TrainConfig]:
    """Split a model.yaml mapping into (ModelConfig, TrainConfig).

    Accepted shapes: ``{model: {...}, train: {...}}`` or a flat mapping whose model keys
    (``preset``, ``dim``, ...) and training keys (``steps``, ``lr``, ...) sit side by side.
    """
    data = dict(data)
    if "model" in data or "train" in data:
        extra = sorted(set(data) - {"model", "train"})
        if extra:
            raise ConfigError(f"model.yaml: unknown top-level key {extra[0]!r}; use 'model' and 'train'")
        model_part = dict(data.get("model") or {})
        train_part = dict(data.get("train") or {})
    else:
        model_names = {f.name for f in fields(ModelConfig)} | {"preset"}
        model_part = {k: v for k, v in data.items() if k in model_names}
        train_part = {k: v for k, v in data.items() if k not in model_names}
    return ModelConfig.from_dict(model_part), TrainConfig.from_dict(train_part)


def load_model_yaml(path: str | os.PathLike[str]) -> tuple[ModelConfig, TrainConfig]:
    """Read model.yaml (safe YAML) into (ModelConfig, TrainConfig); errors name the file."""
    from astromodal_core.config import load_config

    data = load_config(path).to_dict()
    try:
        return split_config(data)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
