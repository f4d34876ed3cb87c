"""ImageTokenizer: a convolutional autoencoder plus a k-means codebook over its latent grid.

Seed API (astromodal tokenizers, ImageTokenizer section)::

    tokenizer = ImageTokenizer(cutout_size=96, bands=[...], latent_dim=2, codebook_size=1024)
    tokenizer.load("autoencoder_splus_cuts.pt")          # on an instance: loads weights into it
    result = tokenizer.encode("datacube_test.parquet", batch_size=32)
    tokenizer.save("image_tokenizer_config.npz")
    tokenizer = ImageTokenizer.load("image_tokenizer_config.npz", device="cuda")  # on the class

Saving follows :class:`astromodal_core.Tokenizer`: the ``.npz`` holds the settings, the loss
history and the per-band scales; the autoencoder weights and the codebook are safetensors
companions beside it (``<stem>.weights.<fp>.safetensors``, ``<stem>.codebook.<fp>.safetensors``),
written with the ``.npz`` as one atomic unit. ``save("x.pt")`` writes a tensors-only torch state
dict instead (read back with ``torch.load(..., weights_only=True)``).

Missing data: NaN pixels, blank values (``|x| >= 1e20``) and absent bands are masked (zero
input, excluded from the loss); a row with no valid pixel at all encodes to the mask token
``codebook_size`` on every grid cell and NaN latents. A cutout with data never yields a
non-finite latent: that would be a :class:`DataError` naming the file, row id and columns.
torch is imported only when a method needs it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astromodal_core import CodecFormatError, DataError, NotFittedError, TokenKey
from astromodal_core.sampling import BottomK, hash_keys
from astromodal_core.serialize import atomic_path
from astromodal_core.tokenizer import Tokenizer, as_file_list

from .modality import (
    DEFAULT_CHANNELS,
    DEFAULT_CODEBOOK_SIZE,
    DEFAULT_CUTOUT_SIZE,
    DEFAULT_LATENT_DIM,
    SCHEDULES,
    SPLUS_BANDS,
    SPLUS_TOKEN_KEY,
    image_token_key,
)
from .storage import DEFAULT_PREFIX, band_column, blank_to_nan, iter_cutouts, prefetched

KIND = "image_tokenizer"
PT_CONFIG_KEY = "astromodal_config"
_EXTRA_PT_KEYS = ("codebook", "band_offset", "band_scale", PT_CONFIG_KEY)
_ARCH_FIELDS = ("cutout_size", "bands", "latent_dim", "codebook_size", "channels")
#: settings that are runtime choices, not part of the saved state
_RUNTIME = ("device",)
#: training-recipe settings and results that files written before them do not record; such a
#: file loads with the defaults, and saves again without them (same bytes, same fingerprint)
_RECIPE_KEYS = ("stretch", "source_weight", "colour_weight", "flux_weight_cap", "augment", "val_fraction",
                "patience", "schedule", "min_epoch_steps", "latent_noise")
_RESULT_KEYS = ("val_history", "best_epoch")
#: a pixel this many sky sigmas above the sky is a source pixel (training loss weighting)
SOURCE_SIGMA = 5.0
FLUX_WEIGHT_CAP_DEFAULT = 1.0
#: rows per record batch of :meth:`ImageTokenizer.iter_token_batches` by default
ENCODE_BATCH = 256
PathLike = str | os.PathLike[str]


def resolve_device(device: Any) -> Any:
    """A torch.device; ``cuda`` without CUDA falls back to CPU with a RuntimeWarning."""
    import torch

    dev = torch.device(device if device is not None else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(
            f"device {str(device)!r} requested but CUDA is not available; using the CPU",
            RuntimeWarning,
            stacklevel=3,
        )
        dev = torch.device("cpu")
    return dev


class _HybridLoad:
    """``load`` on the class returns a new tokenizer; on an instance it loads into that one."""

    def __get__(self, obj: Any, objtype: type | None = None) -> Callable[..., Any]:
        if obj is None:
            return objtype._load_new  # type: ignore[union-attr]
        return obj._load_into


class ImageTokenizer(Tokenizer):
    """Multi-band cutouts -> (H', W') grid of codebook tokens, through a conv autoencoder.

    ``cutout_size`` must be divisible by ``2 ** len(channels)`` (the downsampling factor);
    the token grid is ``cutout_size // 2 ** len(channels)`` on a side. Cutouts are read from
    ``<column_prefix><band>`` columns (see :mod:`astromodal_image.storage`). Training keeps a
    bottom-k reservoir of ``max_cutouts`` rows (about 2 x 0.44 MB each at 96x96x12, so the
    default 1000 holds ~1 GB); the k-means (the core's exact k-means) sees at most
    ``max_codebook_vectors`` latent cells. ``token_key`` names the grid token key written
    (the attribute :attr:`key_name`; ``token_key(name)`` is the base's key lookup).

    Training recipe: each band is ``asinh((flux - sky) / (stretch * sigma))`` (sky = median,
    sigma = 1.4826 MAD of the training pixels: a colour is a fixed per-band factor in the faint,
    linear regime and a fixed difference in the bright, logarithmic one);
    ``val_fraction`` of the cutouts are held out and the weights of the best validation epoch
    are kept (training stops after ``patience`` epochs without improvement, 0: never); every
    batch gets a random flip / 90-degree rotation (``augment``); pixels above 5 sigma weigh
    ``1 + source_weight`` in the loss and band differences on them add ``colour_weight`` times
    their squared error; every pixel's squared error also weighs ``cosh`` of its stretched value
    (its flux error per unit of stretched error), capped at ``flux_weight_cap`` (1: off); Adam
    under a one-cycle schedule peaking at ``lr`` (``schedule``); an epoch runs at least
    ``min_epoch_steps`` batches (several passes over a small sample); ``latent_noise`` trains
    the decoder on jittered latents. With ``augment`` the k-means codebook is fit on the latents
    of all 8 flips / rotations of the training cutouts. :attr:`history` /
    :attr:`val_history` hold the losses per epoch, :attr:`best_epoch` the epoch kept.
    """

    name = "image"
    kind = KIND
    load = _HybridLoad()

    def __init__(
        self,
        cutout_size: int = DEFAULT_CUTOUT_SIZE,
        bands: Sequence[str] = SPLUS_BANDS,
        latent_dim: int = DEFAULT_LATENT_DIM,
        codebook_size: int = DEFAULT_CODEBOOK_SIZE,
        *,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        token_key: str = SPLUS_TOKEN_KEY,
        column_prefix: str = DEFAULT_PREFIX,
        id_col: str = "id",
        rng_seed: int = 0,
        max_cutouts: int = 1000,
        max_codebook_vectors: int = 200_000,
        kmeans_iter: int = 25,
        epochs: int = 10,
        batch_size: int = 16,
        lr: float = 3e-3,
        stretch: float = 3.0,
        source_weight: float = 4.0,
        colour_weight: float = 1.0,
        flux_weight_cap: float = FLUX_WEIGHT_CAP_DEFAULT,
        augment: bool = True,
        val_fraction: float = 0.1,
        patience: int = 10,
        schedule: str = "one_cycle",
        min_epoch_steps: int = 256,
        latent_noise: float = 0.0,
        device: str | None = None,
    ):
        if isinstance(bands, str) or isinstance(channels, (str, int)):
            raise ValueError("ImageTokenizer: bands and channels must be lists")
        self.cutout_size = int(cutout_size)
        self.bands = [str(b) for b in bands]
        self.latent_dim = int(latent_dim)
        self.codebook_size = int(codebook_size)
        self.channels = [int(c) for c in channels]
        self.key_name = str(token_key)
        self.column_prefix = str(column_prefix)
        self.id_col = str(id_col)
        self.rng_seed = int(rng_seed)
        self.max_cutouts = int(max_cutouts)
        self.max_codebook_vectors = int(max_codebook_vectors)
        self.kmeans_iter = int(kmeans_iter)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.stretch = float(stretch)
        self.source_weight = float(source_weight)
        self.colour_weight = float(colour_weight)
        self.flux_weight_cap = float(flux_weight_cap)
        if not isinstance(augment, (bool, np.bool_)):
            raise ValueError(f"ImageTokenizer: augment must be true or false, got {augment!r}")
        self.augment = bool(augment)
        self.val_fraction = float(val_fraction)
        self.patience = int(patience)
        self.schedule = str(schedule)
        self.min_epoch_steps = int(min_epoch_steps)
        self.latent_noise = float(latent_noise)
        self._validate()
        self.device = str(device) if device is not None else "cpu"
        self.band_offset: np.ndarray | None = None
        self.band_scale: np.ndarray | None = None
        self.codebook: np.ndarray | None = None
        self.history: list[float] = []
        self.val_history: list[float] = []
        self.best_epoch: int | None = None
        self._unrecorded: frozenset[str] = frozenset()
        self._model: Any = None
        self._has_weights = False
        image_token_key(self.key_name, codebook_size=self.codebook_size, grid=self.grid_shape)

    def _validate(self) -> None:
        if not self.bands:
            raise ValueError("ImageTokenizer needs at least one band")
        if len(set(self.bands)) != len(self.bands):
            raise ValueError(f"ImageTokenizer: duplicate bands in {self.bands}")
        if not self.channels:
            raise ValueError("ImageTokenizer: channels needs at least one stage")
        for name in ("cutout_size", "latent_dim", "codebook_size", "max_cutouts", "epochs",
                     "batch_size", "kmeans_iter", "max_codebook_vectors", "min_epoch_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"ImageTokenizer: {name} must be >= 1, got {getattr(self, name)}")
        if any(c < 1 for c in self.channels):
            raise ValueError(f"ImageTokenizer: channels must be >= 1, got {self.channels}")
        if self.codebook_size > 65535:
            raise ValueError(f"ImageTokenizer: codebook_size {self.codebook_size} > 65535 does not fit uint16")
        if self.cutout_size % self.downsample:
            raise ValueError(
                f"ImageTokenizer: cutout_size {self.cutout_size} is not divisible by the "
                f"downsampling factor {self.downsample} (2 ** {len(self.channels)} stages)"
            )
        for name in ("lr", "stretch"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"ImageTokenizer: {name} must be a positive number, got {value}")
        for name in ("source_weight", "colour_weight", "latent_noise"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"ImageTokenizer: {name} must be a number >= 0, got {value}")
        if not np.isfinite(self.flux_weight_cap) or self.flux_weight_cap < 1:
            raise ValueError(f"ImageTokenizer: flux_weight_cap must be a number >= 1 (1: off), got {self.flux_weight_cap}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"ImageTokenizer: val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.patience < 0:
            raise ValueError(f"ImageTokenizer: patience must be >= 0 (0: never stop early), got {self.patience}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"ImageTokenizer: schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")

    # properties ------------------------------------------------------------------------------
    @property
    def downsample(self) -> int:
        """Pixels per token along each axis."""
        return 2 ** len(self.channels)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """(H', W') of the token grid."""
        g = self.cutout_size // self.downsample
        return g, g

    @property
    def mask_token(self) -> int:
        """The token id of a grid cell in a row with no data."""
        return self.codebook_size

    @property
    def band_columns(self) -> list[str]:
        """The datacube columns read, in band order."""
        return [band_column(b, self.column_prefix) for b in self.bands]

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        """The one grid token key this tokenizer writes (``codebook_size + 1`` ids)."""
        return (image_token_key(self.key_name, codebook_size=self.codebook_size, grid=self.grid_shape),)

    @property
    def is_fitted(self) -> bool:
        """True once weights, band scales and a codebook are all present."""
        return self._has_weights and self.band_scale is not None and self.codebook is not None

    def missing_state(self) -> list[str]:
        """What encoding still lacks (empty when fitted)."""
        missing = []
        if not self._has_weights:
            missing.append("autoencoder weights")
        if self.band_scale is None or self.band_offset is None:
            missing.append("per-band scales ('band_offset', 'band_scale')")
        if self.codebook is None:
            missing.append("codebook")
        return missing

    def check_fitted(self) -> None:
        """Raise NotFittedError naming what is missing."""
        missing = self.missing_state()
        if missing:
            raise NotFittedError(
                f"ImageTokenizer is not fitted: no {', no '.join(missing)}; call train(...), "
                "load a file written by save(...), or fit_codebook(...) after loading bare weights"
            )

    def architecture(self) -> dict[str, Any]:
        """The fields the weights and codebook depend on."""
        return {
            "cutout_size": self.cutout_size,
            "bands": list(self.bands),
            "latent_dim": self.latent_dim,
            "codebook_size": self.codebook_size,
            "channels": list(self.channels),
        }

    def settings(self) -> dict[str, Any]:
        """The constructor settings of this instance (``token_key`` is :attr:`key_name`)."""
        out = {}
        for k in self.config_options():
            value = self.key_name if k == "token_key" else getattr(self, k)
            out[k] = list(value) if isinstance(value, (list, tuple)) else value
        return out

    def get_config(self) -> dict[str, Any]:
        """The saved settings: every constructor argument but the runtime ``device`` (and the
        recipe settings a file loaded from did not record)."""
        return {k: v for k, v in self.settings().items() if k not in _RUNTIME and k not in self._unrecorded}

    def _results(self) -> dict[str, Any]:
        """The training record saved with the state: loss histories and the kept epoch."""
        out: dict[str, Any] = {"history": [float(h) for h in self.history]}
        if "val_history" not in self._unrecorded:
            out["val_history"] = [float(h) for h in self.val_history]
        if "best_epoch" not in self._unrecorded:
            out["best_epoch"] = None if self.best_epoch is None else int(self.best_epoch)
        return out

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "not fitted"
        return (
            f"ImageTokenizer(cutout_size={self.cutout_size}, bands={self.bands}, "
            f"latent_dim={self.latent_dim}, codebook_size={self.codebook_size}, {state})"
        )

    # model -----------------------------------------------------------------------------------
    def _new_model(self) -> Any:
        import torch

        from .network import CutoutAutoencoder

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.rng_seed)
            return CutoutAutoencoder(len(self.bands), self.latent_dim, self.channels)

    def _ensure_model(self) -> Any:
        if self._model is None:
            self._model = self._new_model().eval()
        return self._model

    def _weights_numpy(self) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v.detach().cpu().numpy())
                for k, v in self._ensure_model().state_dict().items()}

    # sampling and training -------------------------------------------------------------------
    def _reservoir(self) -> BottomK:
        return BottomK(self.max_cutouts, width=len(self.bands) * self.cutout_size**2, dtype=np.float32)

    def sample_file(self, path: PathLike) -> BottomK:
        """A bottom-k reservoir of one file's cutouts with any valid pixel (mergeable)."""
        res = self._reservoir()
        for ids, flux in iter_cutouts(
            path, self.bands, self.cutout_size, batch_size=256, id_col=self.id_col,
            prefix=self.column_prefix,
        ):
            has = ~np.isnan(flux).all(axis=(1, 2, 3))
            if has.any():
                keys = hash_keys(ids[has], self.rng_seed, salt="image_cutouts")
                res.add(keys, flux[has].reshape(int(has.sum()), -1))
        return res

    def fit_from_samples(self, states: Iterable[BottomK], **train_kwargs: Any) -> ImageTokenizer:
        """Merge per-file reservoirs from :meth:`sample_file` (any order) and fit on the result.

        ``train_kwargs`` are those of :meth:`fit_arrays` (epochs, device, progress, ...).
        """
        merged: BottomK | None = None
        for state in states:
            merged = state if merged is None else self.merge_samples(merged, state)
        self._fit(merged if merged is not None else self._reservoir(), **train_kwargs)
        return self

    def _fit(self, sample: BottomK, **train_kwargs: Any) -> None:
        rows = sample.sample()
        if len(rows) == 0:
            raise DataError(
                f"{train_kwargs.get('source', 'training sample')}: no cutout with a valid pixel in "
                f"columns {self.band_columns}; nothing to train on"
            )
        flux = rows.reshape(len(rows), len(self.bands), self.cutout_size, self.cutout_size)
        self.fit_arrays(flux, **train_kwargs)

    def train(
        self,
        sources: PathLike | Sequence[PathLike],
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        device: str | None = None,
        checkpoint_dir: PathLike | None = None,
        resume: bool = False,
        progress: bool = False,
    ) -> ImageTokenizer:
        """Train the autoencoder and the codebook on cutouts sampled from parquet datacubes.

        Memory holds one merged reservoir and one file's reservoir at a time.
        """
        files = as_file_list(sources)
        return self.fit_from_samples(
            (self.sample_file(f) for f in files), epochs=epochs, batch_size=batch_size, lr=lr,
            device=device, checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
            source=", ".join(str(f) for f in files),
        )

    def fit_arrays(
        self,
        flux: np.ndarray,
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        device: str | None = None,
        checkpoint_dir: PathLike | None = None,
        resume: bool = False,
        progress: bool = False,
        source: str = "training cutouts",
    ) -> ImageTokenizer:
        """Train on an in-memory float array (n, bands, H, W) with NaN = missing.

        On any error the tokenizer keeps the state it had before the call.
        """
        snapshot = dict(self.__dict__)
        try:
            return self._fit_arrays(
                flux, epochs=epochs, batch_size=batch_size, lr=lr, device=device,
                checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, source=source,
            )
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise

    def _fit_arrays(
        self, flux: np.ndarray, *, epochs: int | None, batch_size: int | None, lr: float | None,
        device: str | None, checkpoint_dir: PathLike | None, resume: bool, progress: bool,
        source: str,
    ) -> ImageTokenizer:
        import torch

        from .training import train_autoencoder

        flux = self._check_flux(flux, source)
        keep = ~np.isnan(flux).all(axis=(1, 2, 3))
        flux = flux[keep]
        if len(flux) == 0:
            raise DataError(f"{source}: every cutout is NaN-only; nothing to train on")
        self._fit_scales(flux, source)
        dev = resolve_device(device or self.device)
        x, valid = self._preprocess_cpu(flux)
        fit, val = self.validation_split(len(x))
        model = self._new_model()
        steps = {"epochs": int(epochs or self.epochs), "batch_size": int(batch_size or self.batch_size),
                 "lr": float(lr or self.lr)}
        recipe = {k: getattr(self, k) for k in _RECIPE_KEYS}
        result = train_autoencoder(
            model, x[fit], valid[fit], **steps, seed=self.rng_seed, device=dev,
            config={**self.architecture(), **recipe, **steps, "rng_seed": self.rng_seed,
                    "band_offset": self.band_offset.tolist(), "band_scale": self.band_scale.tolist()},
            val=(x[val], valid[val]) if len(val) else None,
            augment=self.augment, schedule=self.schedule, patience=self.patience,
            min_epoch_steps=self.min_epoch_steps, latent_noise=self.latent_noise,
            loss_kw={"source_level": float(np.arcsinh(SOURCE_SIGMA / self.stretch)),
                     "source_weight": self.source_weight, "colour_weight": self.colour_weight,
                     "flux_weight_cap": self.flux_weight_cap},
            checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
        )
        self.history, self.val_history = result.history, result.val_history
        self.best_epoch = result.best_epoch
        self._unrecorded = frozenset()
        self._model = model.to("cpu").eval()
        self._has_weights = True
        self.codebook = None
        with torch.inference_mode():
            latents = self._codebook_latents(x, valid, dev)
        self._fit_codebook_from_latents(latents, source)
        return self

    def validation_split(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices (training, validation) of ``n`` training cutouts: ``floor(n *
        val_fraction)`` rows drawn for ``rng_seed`` are held out (none when that is 0)."""
        n_val = int(n * self.val_fraction)
        if n_val == 0:
            return np.arange(n), np.arange(0)
        perm = np.random.default_rng([self.rng_seed, 0x7A1]).permutation(n)
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])

    def fit_codebook(self, parquet_files: PathLike | Sequence[PathLike], *, device: str | None = None) -> ImageTokenizer:
        """Fit only the k-means codebook, keeping loaded weights and band scales."""
        import torch

        if not self._has_weights or self.band_scale is None:
            raise NotFittedError(
                "ImageTokenizer.fit_codebook needs autoencoder weights and per-band scales "
                f"first (missing: {', '.join(self.missing_state())})"
            )
        files = as_file_list(parquet_files)
        merged = self._reservoir()
        for f in files:
            merged.merge(self.sample_file(f))
        sample = merged.sample()
        source = ", ".join(str(f) for f in files)
        if len(sample) == 0:
            raise DataError(f"{source}: no cutout with a valid pixel in columns {self.band_columns}")
        flux = sample.reshape(len(sample), len(self.bands), self.cutout_size, self.cutout_size)
        x, valid = self._preprocess_cpu(flux)
        with torch.inference_mode():
            latents = self._codebook_latents(x, valid, resolve_device(device or self.device))
        self._fit_codebook_from_latents(latents, source)
        return self

    def _check_flux(self, flux: np.ndarray, source: str) -> np.ndarray:
        """float32 cutouts with blank values as NaN; ±inf is a DataError naming row and column."""
        flux = blank_to_nan(flux)
        want = (len(self.bands), self.cutout_size, self.cutout_size)
        if flux.ndim != 4 or flux.shape[1:] != want:
            raise DataError(f"{source}: cutouts have shape {flux.shape[1:]}, expected {want} (bands, H, W)")
        inf = np.isinf(flux).any(axis=(2, 3))
        if inf.any():
            row, band = (int(v[0]) for v in np.nonzero(inf))
            raise DataError(
                f"{source}: row {row}, column {self.band_columns[band]!r}: cutout holds infinite "
                f"pixels ({int(inf.any(1).sum())} such rows); use NaN for missing pixels"
            )
        return flux

    def _fit_scales(self, flux: np.ndarray, source: str) -> None:
        """Per-band sky level (median) and arcsinh softening: ``stretch`` times the sky noise
        (1.4826 * MAD) of the training pixels."""
        offset = np.empty(len(self.bands), dtype=np.float32)
        scale = np.empty(len(self.bands), dtype=np.float32)
        for j, band in enumerate(self.bands):
            pix = flux[:, j].ravel()
            pix = pix[np.isfinite(pix)]
            if pix.size == 0:
                raise DataError(
                    f"{source}: column {band_column(band, self.column_prefix)!r} has no finite "
                    "pixel in the training sample; drop the band or add data"
                )
            if pix.size > 4_000_000:
                pix = pix[:: pix.size // 4_000_000 + 1]
            med = float(np.median(pix))
            mad = 1.4826 * float(np.median(np.abs(pix - med)))
            if not np.float32(mad) > 0:
                mad = float(np.std(pix))
            if not np.float32(mad) > 0 or not np.isfinite(np.float32(1.0) / np.float32(mad)):
                mad = 1.0  # a constant band: any positive scale works
            offset[j], scale[j] = med, mad * self.stretch
        self.band_offset, self.band_scale = offset, scale

    def _scales_torch(self, device: Any) -> tuple[Any, Any]:
        import torch

        return (torch.as_tensor(self.band_offset, device=device),
                torch.as_tensor(self.band_scale, device=device))

    def _preprocess_cpu(self, flux: np.ndarray) -> tuple[Any, Any]:
        """Compressed cutouts (NCHW view, channels-last memory) and the pixel validity mask."""
        import torch

        from .kernels import asinh_compress

        x, _ = asinh_compress(flux, self.band_offset, self.band_scale)
        valid = torch.from_numpy(~np.isnan(flux))
        return torch.from_numpy(x).permute(0, 3, 1, 2), valid

    def _latents_of(self, x: Any, valid: Any, device: Any, chunk: int = 256, flip: int = 0) -> np.ndarray:
        """Latent grids (n, D, H', W') of preprocessed cutouts (turned by the dihedral ``flip``,
        0: as they are); NaN for rows with no data."""
        import torch

        from .network import dihedral

        model = self._ensure_model().to(device)
        out = []
        for s in range(0, len(x), chunk):
            xb = x[s : s + chunk].to(device)
            if flip:
                xb = dihedral(xb, flip).contiguous()
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                z = model.encoder(xb)
            z = z.float().cpu()
            empty = ~valid[s : s + chunk].flatten(1).any(1)
            z[empty] = float("nan")
            out.append(z.numpy())
        self._model = model.to("cpu")
        return np.concatenate(out) if out else np.empty((0, self.latent_dim, *self.grid_shape), np.float32)

    def _codebook_latents(self, x: Any, valid: Any, device: Any) -> np.ndarray:
        """The latents the codebook is fit on: with ``augment``, those of the 8 flips /
        90-degree rotations of every cutout (8x the cells: the rare bright cells get more
        codes), else those of the cutouts as they are."""
        flips = range(8) if self.augment else range(1)
        return np.concatenate([self._latents_of(x, valid, device, flip=k) for k in flips])

    def _fit_codebook_from_latents(self, latents: np.ndarray, source: str) -> None:
        """The codebook: the core's k-means codebook block (exact k-means, deterministic for
        ``rng_seed``) on at most ``max_codebook_vectors`` finite latent cells."""
        from astromodal_core.blocks import KMeansCodebook

        vecs = latents.transpose(0, 2, 3, 1).reshape(-1, self.latent_dim)
        vecs = vecs[np.isfinite(vecs).all(1)]
        if len(vecs) < self.codebook_size:
            raise DataError(
                f"{source}: {len(vecs)} latent vectors for a codebook of {self.codebook_size}; "
                "add cutouts (max_cutouts) or lower codebook_size"
            )
        book = KMeansCodebook(self.codebook_size, seed=self.rng_seed, n_iter=self.kmeans_iter,
                              max_samples=self.max_codebook_vectors, name=self.key_name)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"k-means .*distinct training vectors")
            book.fit(vecs)
        if book.n_codes < self.codebook_size:
            raise DataError(
                f"{source}: only {book.n_codes} distinct latent vectors for a codebook of "
                f"{self.codebook_size}; add varied cutouts (max_cutouts) or lower codebook_size"
            )
        self.codebook = book.centroids

    # encoding --------------------------------------------------------------------------------
    def _quantize(self, z: Any) -> Any:
        """Nearest codebook index of each latent cell: (n, D, H', W') -> (n, H', W') int64."""
        import torch

        cb = torch.as_tensor(self.codebook, device=z.device, dtype=torch.float32)
        cc = (cb * cb).sum(1)
        m2t = (-2.0 * cb).T.contiguous()  # exact: scaling by -2 rounds nothing
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.latent_dim).float()
        # |c|^2 - 2 x.c in one fused addmm per block of rows; on the CPU a block of 512 rows
        # keeps the (rows, codebook) distance matrix in cache for the argmin (3-4x faster than
        # building the whole matrix in three passes).
        step = 512 if z.device.type == "cpu" else 65536
        idx = torch.empty(len(flat), dtype=torch.int64, device=z.device)
        for s in range(0, len(flat), step):
            idx[s : s + step] = torch.addmm(cc, flat[s : s + step], m2t).argmin(1)
        return idx.reshape(z.shape[0], z.shape[2], z.shape[3])

    def encode_array(
        self, flux: np.ndarray, *, batch_size: int = 256, device: str | None = None,
        source: str = "cutouts",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tokens (n, H', W') uint16 and latents (n, D, H', W') float32 of in-memory cutouts."""
        self.check_fitted()
        flux = self._check_flux(flux, source)
        n = len(flux)
        tokens = np.empty((n, *self.grid_shape), dtype=np.uint16)
        latents = np.empty((n, self.latent_dim, *self.grid_shape), dtype=np.float32)
        rows = np.arange(n, dtype=np.int64)
        batches = ((rows[s : s + batch_size], flux[s : s + batch_size]) for s in range(0, n, batch_size))
        for ids, tok, lat in self._run(batches, device=device, source=source, latents=True, label="row"):
            tokens[ids] = tok
            latents[ids] = lat
        return tokens, latents

    def _run(
        self, batches: Iterable[tuple[np.ndarray, np.ndarray]], *, device: str | None, source: str,
        latents: bool, label: str = "row id",
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Encode ``(ids, flux)`` batches in order: ``(ids, tokens uint16, latents or None)``."""
        self.check_fitted()
        runner = _EncodeRunner(self, resolve_device(device or self.device), source=source,
                               latents=latents, label=label)
        try:
            for ids, flux in batches:
                yield from runner.submit(ids, flux)
            yield from runner.finish()
        finally:
            runner.close()

    def _file_batches(
        self, path: PathLike, *, batch_size: int, id_col: str, device: str | None,
        prefetch: bool | None, latents: bool, progress: bool,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        from tqdm.auto import tqdm

        from astromodal_core.io import num_rows

        self.check_fitted()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        dev = resolve_device(device or self.device)
        prefetch = dev.type == "cuda" if prefetch is None else prefetch
        batches: Iterator[tuple[np.ndarray, np.ndarray]] = iter_cutouts(
            path, self.bands, self.cutout_size, batch_size=int(batch_size), id_col=id_col,
            prefix=self.column_prefix, buffers=3 if prefetch else 1,
        )
        if prefetch:
            batches = prefetched(batches)
        try:
            with tqdm(total=num_rows(path), desc="image encode", unit="cutout", disable=not progress) as bar:
                for out in self._run(batches, device=str(dev), source=str(path), latents=latents):
                    bar.update(len(out[0]))
                    yield out
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    @property
    def encode_batch_size(self) -> int:
        """Cutouts per record batch when encoding (``batch_size`` is the training mini-batch)."""
        return ENCODE_BATCH

    def iter_token_batches(
        self, path: PathLike, *, batch_size: int | None = None, progress: bool = False,
        device: str | None = None, prefetch: bool | None = None,
    ) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
        """Yield ``(ids, {token key: (n, H', W') uint16})`` per record batch of ``path``, in order.

        Memory is bounded by ``batch_size`` (default 256) rows; ``prefetch`` (default: on CUDA)
        reads the next batch in a background thread while this one runs on the device.
        """
        for ids, tokens, _ in self._file_batches(
            path, batch_size=int(batch_size or ENCODE_BATCH), id_col=self.id_col, device=device,
            prefetch=prefetch, latents=False, progress=progress,
        ):
            yield ids, {self.key_name: tokens}

    def encode(
        self,
        path: PathLike,
        batch_size: int | None = 32,
        *,
        id_col: str | None = None,
        device: str | None = None,
        progress: bool = False,
        prefetch: bool | None = None,
    ) -> dict[str, Any]:
        """Encode a parquet datacube: ``image_tokens``, ``image_latents``, ``ids``, ``id_col``.

        ``batch_size`` rows are read per record batch. ``prefetch`` reads the next batch in a
        background thread while this one runs (default: on CUDA only; on a small CPU the
        encoder already uses every core).
        """
        from astromodal_core.io import num_rows

        self.check_fitted()
        id_col = id_col or self.id_col
        n = num_rows(path)
        tokens = np.empty((n, *self.grid_shape), dtype=np.uint16)
        latents = np.empty((n, self.latent_dim, *self.grid_shape), dtype=np.float32)
        ids = np.empty(n, dtype=np.int64)
        start = 0
        for batch_ids, tok, lat in self._file_batches(
            path, batch_size=int(batch_size or 32), id_col=id_col, device=device, prefetch=prefetch,
            latents=True, progress=progress,
        ):
            m = len(batch_ids)
            if start + m > n:
                raise DataError(f"{path}: footer says {n} rows but more were read")
            ids[start : start + m] = batch_ids
            tokens[start : start + m] = tok
            latents[start : start + m] = lat
            start += m
        if start != n:
            raise DataError(f"{path}: footer says {n} rows but {start} were read")
        return {"image_tokens": tokens, "image_latents": latents, "ids": ids, "id_col": id_col}

    def to_token_columns(self, result: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The seed dict as token-store columns: ``{token_key: (n, H', W') uint16}``."""
        return {self.key_name: np.asarray(result["image_tokens"], dtype=np.uint16)}

    # decoding --------------------------------------------------------------------------------
    def decode(
        self,
        tokens: np.ndarray,
        bands: Sequence[str] | None = None,
        *,
        batch_size: int = 256,
        device: str | None = None,
    ) -> np.ndarray:
        """Tokens (n, H', W') -> flux (n, len(bands), H, W) in the input units.

        A row of mask tokens decodes to NaN; a masked cell in a partly masked row uses the
        mean codebook vector.
        """
        self.check_fitted()
        tokens = np.asarray(tokens)
        if tokens.ndim != 3 or tokens.shape[1:] != self.grid_shape:
            raise DataError(
                f"{self.key_name}: tokens have shape {tokens.shape}, expected (n, {self.grid_shape[0]}, "
                f"{self.grid_shape[1]})"
            )
        if tokens.size and (tokens.min() < 0 or tokens.max() > self.mask_token):
            raise DataError(
                f"{self.key_name}: tokens outside [0, {self.mask_token}] "
                f"(min {tokens.min()}, max {tokens.max()})"
            )
        idx = self._band_indices(bands)
        cb = np.concatenate([self.codebook, self.codebook.mean(0, keepdims=True)])
        z = cb[tokens.astype(np.int64)].transpose(0, 3, 1, 2)
        out = self.decode_latents(z, batch_size=batch_size, device=device)[:, idx]
        empty = (tokens == self.mask_token).all(axis=(1, 2))
        out[empty] = np.nan
        return out

    def decode_latents(
        self, latents: np.ndarray, *, batch_size: int = 256, device: str | None = None
    ) -> np.ndarray:
        """Latents (n, D, H', W') -> flux (n, bands, H, W) in the input units (all bands)."""
        import torch

        from .network import postprocess

        self.check_fitted()
        dev = resolve_device(device or self.device)
        model = self._ensure_model().to(dev)
        off, sc = self._scales_torch(dev)
        n = len(latents)
        out = np.empty((n, len(self.bands), self.cutout_size, self.cutout_size), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, n, batch_size):
                z = torch.as_tensor(np.ascontiguousarray(latents[s : s + batch_size]), dtype=torch.float32, device=dev)
                y = postprocess(model.decoder(z).float(), off, sc)
                out[s : s + batch_size] = y.cpu().numpy()
        self._model = model.to("cpu")
        return out

    def _band_indices(self, bands: Sequence[str] | None) -> list[int]:
        if bands is None:
            return list(range(len(self.bands)))
        unknown = [b for b in bands if b not in self.bands]
        if unknown:
            raise DataError(f"bands {unknown} are not among this tokenizer's bands {self.bands}")
        return [self.bands.index(b) for b in bands]

    # codecs ----------------------------------------------------------------------------------
    def codecs(self) -> list[Any]:
        """The fitted ImageCodec for this tokenizer's modality."""
        from .codec import ImageCodec

        self.check_fitted()
        return [ImageCodec.from_tokenizer(self)]

    # state (the base's save / load / fingerprint) --------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        self.check_fitted()
        config = {**self.get_config(), **self._results()}
        return config, {"band_offset": self.band_offset, "band_scale": self.band_scale}

    def _companions(self) -> dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]]:
        return {
            "weights": (self._weights_numpy(), {"architecture": self.architecture()}),
            "codebook": ({"codebook": self.codebook}, {}),
        }

    @classmethod
    def _from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray],
                    companions: dict[str, dict[str, np.ndarray]], *, device: str | None = None,
                    **overrides: Any) -> ImageTokenizer:
        """A fitted tokenizer from saved state; every part is checked (``CodecFormatError``)."""
        settings = dict(config)
        if "weights_file" in settings:
            raise CodecFormatError(
                f"written by an earlier astromodal-image (weights in {settings['weights_file']!r}); "
                "load that version's .pt file into ImageTokenizer(...) or retrain")
        results = _checked_results(settings, "image tokenizer state")
        unknown = sorted(set(settings) - set(cls.config_options()))
        if unknown:
            raise CodecFormatError(f"image tokenizer state: unknown settings {unknown}")
        try:
            tok = cls(**{**settings, **overrides})
        except (TypeError, ValueError) as exc:
            raise CodecFormatError(f"image tokenizer state: invalid settings ({exc})") from exc
        for part in ("weights", "codebook"):
            if part not in companions:
                raise CodecFormatError(f"image tokenizer state: no {part!r} companion")
        for name in ("band_offset", "band_scale"):
            if name not in arrays:
                raise CodecFormatError(f"image tokenizer state: no {name!r} array")
        if "codebook" not in companions["codebook"]:
            raise CodecFormatError("image tokenizer state: the codebook companion holds no 'codebook' tensor")
        where = "image tokenizer state"
        model = tok._checked_model(companions["weights"], where)
        codebook = tok._checked_codebook(companions["codebook"]["codebook"], where)
        offset, scale = tok._checked_scales(arrays["band_offset"], arrays["band_scale"], where)
        tok._model, tok._has_weights = model, True
        tok.codebook, tok.band_offset, tok.band_scale = codebook, offset, scale
        tok._set_results(results, recorded=config)
        tok.device = str(resolve_device(device))
        return tok

    def _set_results(self, results: Mapping[str, Any], *, recorded: Mapping[str, Any]) -> None:
        """Take a file's training record; remember which recipe keys it did not record."""
        self.history = list(results["history"])
        self.val_history = list(results["val_history"])
        self.best_epoch = results["best_epoch"]
        self._unrecorded = frozenset(k for k in (*_RECIPE_KEYS, *_RESULT_KEYS) if k not in recorded)

    def _checked_codebook(self, cb: Any, where: str) -> np.ndarray:
        from astromodal_core.blocks import check_codebook

        shape = np.shape(cb)
        want = (self.codebook_size, self.latent_dim)
        if shape != want:
            raise CodecFormatError(
                f"{where}: codebook has shape {shape}, expected {want} for "
                f"codebook_size={self.codebook_size}, latent_dim={self.latent_dim}"
            )
        return check_codebook(cb, size=self.codebook_size, dim=self.latent_dim, where=where)

    def _checked_scales(self, offset: Any, scale: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
        offset, scale = np.asarray(offset), np.asarray(scale)
        nb = len(self.bands)
        for name, a in (("band_offset", offset), ("band_scale", scale)):
            if a.shape != (nb,):
                raise CodecFormatError(
                    f"{where}: {name} has shape {a.shape}, expected ({nb},) for bands {self.bands}")
            if a.dtype.kind != "f" or not np.isfinite(a).all():
                raise CodecFormatError(f"{where}: {name} holds NaN, infinite or non-float values")
        scale32 = scale.astype(np.float32)
        if not (scale32 > 0).all() or not np.isfinite(np.float32(1.0) / scale32).all():
            raise CodecFormatError(f"{where}: band_scale must be positive, got {scale.tolist()}")
        return offset.astype(np.float32), scale32

    def _checked_model(self, weights: Mapping[str, Any], where: str) -> Any:
        """A new model holding ``weights``, checked against this architecture (names, shapes,
        finite values)."""
        import torch

        model = self._new_model()
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        got = {k: tuple(np.shape(v)) for k, v in weights.items()}
        missing = sorted(set(expected) - set(got))
        unexpected = sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        if missing or unexpected or wrong:
            lines = [f"  missing: {k} {expected[k]}" for k in missing]
            lines += [f"  unexpected: {k} {got[k]}" for k in unexpected]
            lines += [f"  shape: {k} file {got[k]} vs model {expected[k]}" for k in wrong]
            hint = ""
            first = "encoder.0.weight"
            if first in got and first in expected and got[first][1:2] != expected[first][1:2]:
                hint = (f"; the weights take {got[first][1]} input bands, this tokenizer has "
                        f"{len(self.bands)} bands {self.bands}")
            raise CodecFormatError(
                f"{where}: weights do not fit this architecture ({self.architecture()}){hint}; "
                f"mismatched tensors:\n" + "\n".join(lines)
            )
        arrays = {k: np.asarray(v) for k, v in weights.items()}
        for k, a in arrays.items():
            if a.dtype.kind != "f" or not np.isfinite(a).all():
                raise CodecFormatError(f"{where}: weight tensor {k!r} holds NaN, infinite or non-float values")
        model.load_state_dict({k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in arrays.items()})
        return model.eval()

    # saving and loading ----------------------------------------------------------------------
    def save(self, path: PathLike) -> Path:
        """``*.npz``: the base's save (settings, history and band scales in the ``.npz``;
        weights and codebook in safetensors companions; one atomic unit, byte-reproducible).

        ``*.pt``: one torch state dict of tensors only (weights, ``codebook``, ``band_offset``,
        ``band_scale`` and the settings as JSON bytes in ``astromodal_config``), loadable
        with ``torch.load(..., weights_only=True)`` and by :meth:`load` on an instance.
        """
        path = Path(path)
        if path.suffix == ".pt":
            self._save_pt(path)
            return path
        if path.suffix != ".npz":
            raise ValueError(f"{path}: save to a .npz (tokenizer) or a .pt (torch state dict) file")
        return super().save(path)

    def _save_pt(self, path: Path) -> None:
        import torch

        if not self._has_weights:
            raise NotFittedError("ImageTokenizer has no autoencoder weights to save")
        sd = {k: torch.from_numpy(v.copy()) for k, v in self._weights_numpy().items()}
        if self.codebook is not None:
            sd["codebook"] = torch.from_numpy(self.codebook.copy())
        if self.band_offset is not None and self.band_scale is not None:
            sd["band_offset"] = torch.from_numpy(self.band_offset.copy())
            sd["band_scale"] = torch.from_numpy(self.band_scale.copy())
        record = {**self.get_config(), **self._results(), "format_version": 1}
        raw = json.dumps(record, sort_keys=True).encode()
        sd[PT_CONFIG_KEY] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()
        with atomic_path(path, suffix=".pt") as tmp, open(tmp, "wb") as fh:
            torch.save(sd, fh)  # through a file object: the archive name, so the bytes, are fixed

    @classmethod
    def _load_new(cls, path: PathLike, device: str | None = None, **overrides: Any) -> ImageTokenizer:
        """Read a tokenizer written by :meth:`save` (.npz, or a .pt that records its settings)."""
        path = Path(path)
        if path.suffix == ".pt":
            sd = _read_pt(path)
            record = _pt_config(sd, path)
            if record is None:
                raise CodecFormatError(
                    f"{path}: holds bare weights without an {PT_CONFIG_KEY!r} record; construct "
                    "ImageTokenizer(cutout_size=..., bands=[...], ...) and call .load(path) on it"
                )
            settings = {k: v for k, v in record.items() if k in cls.config_options() and k not in _RUNTIME}
            try:
                tok = cls(**{**settings, **overrides})
            except (TypeError, ValueError) as exc:
                raise CodecFormatError(f"{path}: invalid settings in {PT_CONFIG_KEY!r} ({exc})") from exc
            tok._apply_pt(sd, path)
            tok._unrecorded = frozenset(k for k in (*_RECIPE_KEYS, *_RESULT_KEYS) if k not in record)
            tok.device = str(resolve_device(device))
            return tok
        try:
            return super().load(path, device=device, **overrides)
        except CodecFormatError as exc:
            if str(path) in str(exc):
                raise
            raise CodecFormatError(f"{path}: {exc}") from exc

    def _load_into(self, path: PathLike, device: str | None = None) -> ImageTokenizer:
        """Load a ``.pt`` state dict (or a saved ``.npz``) into this tokenizer; return it.

        The file's architecture must be this tokenizer's: only the fitted state (weights,
        codebook, band scales, loss history) is taken from it, the settings stay this
        instance's. On any error this tokenizer is left unchanged.
        """
        path = Path(path)
        if path.suffix != ".pt":
            other = type(self)._load_new(path, device=device or self.device)
            self._check_architecture(other.architecture(), path)
            self._model, self._has_weights = other._model, other._has_weights
            self.codebook = other.codebook
            self.history, self.val_history, self.best_epoch = other.history, other.val_history, other.best_epoch
            self.band_offset, self.band_scale = other.band_offset, other.band_scale
            self.device = other.device
            return self
        self._apply_pt(_read_pt(path), path)
        if device is not None:
            self.device = str(resolve_device(device))
        return self

    def _check_architecture(self, arch: Mapping[str, Any], path: Path) -> None:
        """Raise CodecFormatError listing every field where ``arch`` (a file's) differs from ours."""
        mine = self.architecture()
        diff = [k for k in _ARCH_FIELDS if k in arch and arch[k] != mine[k]]
        if not diff:
            return
        parts = []
        if "bands" in diff:
            parts.append(f"weights were trained for bands {arch['bands']}, but this tokenizer "
                         f"has bands {mine['bands']}")
        rest = [k for k in diff if k != "bands"]
        if rest:
            parts.append("weights were written for " + ", ".join(f"{k}={arch[k]}" for k in rest)
                         + "; this tokenizer has " + ", ".join(f"{k}={mine[k]}" for k in rest))
        raise CodecFormatError(
            f"{path}: " + "; and ".join(parts)
            + " (ImageTokenizer.load(path) on the class builds a tokenizer with the file's architecture)"
        )

    def _apply_pt(self, sd: dict[str, Any], path: Path) -> None:
        """Take the fitted state of a torch state dict; everything is checked before any of it
        replaces this tokenizer's state."""
        record = _pt_config(sd, path)
        if record is not None:
            self._check_architecture({k: record[k] for k in _ARCH_FIELDS if k in record}, path)
        where = str(path)
        weights = {k: v.numpy() for k, v in sd.items() if k not in _EXTRA_PT_KEYS}
        model = self._checked_model(weights, where)
        cb = sd.get("codebook")
        codebook = None if cb is None else self._checked_codebook(cb.numpy(), where)
        if "band_scale" in sd and "band_offset" in sd:
            offset, scale = self._checked_scales(sd["band_offset"].numpy(), sd["band_scale"].numpy(), where)
        else:
            offset = scale = None
        results = _checked_results(dict(record or {}), where)
        self._model, self._has_weights = model, True
        self.codebook, self.band_offset, self.band_scale = codebook, offset, scale
        self.history, self.val_history = results["history"], results["val_history"]
        self.best_epoch = results["best_epoch"]


class _EncodeRunner:
    """Runs the encoder on ``(ids, flux)`` batches and hands back ``(ids, tokens, latents)``.

    On CUDA: pinned memory, non-blocking copies, bf16, and one batch in flight: a batch's
    results come back after the next batch is launched, so the device works while the host
    reads. On CPU: batches run in chunks of ``CPU_CHUNK`` rows so the activations stay small.
    A row with data whose latents are not finite is a :class:`DataError` naming the row and
    the columns (never a token from NaN latents).
    """

    CPU_CHUNK = 64

    def __init__(self, tok: ImageTokenizer, device: Any, *, source: str, latents: bool = True,
                 label: str = "row id"):
        import torch

        self.torch = torch
        self.tok = tok
        self.device = device
        self.source = source
        self.latents = latents
        self.label = label
        self.cuda = device.type == "cuda"
        self.model = tok._ensure_model().to(device).eval()
        if not self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.off, self.sc = tok._scales_torch(device)
        self.buf: np.ndarray | None = None
        self.pending: list[tuple[Any, ...]] = []

    def submit(self, ids: np.ndarray, flux: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Start encoding one batch; return the batches finished by now, in order."""
        if self.cuda:
            launched = self._launch_cuda(ids, flux)
            done = self._drain()
            self.pending.append(launched)
            return done
        n = len(flux)
        grid = self.tok.grid_shape
        tokens = np.empty((n, *grid), dtype=np.uint16)
        latents = np.empty((n, self.tok.latent_dim, *grid), dtype=np.float32)
        for s in range(0, n, self.CPU_CHUNK):
            self._run_cpu(ids[s : s + self.CPU_CHUNK], flux[s : s + self.CPU_CHUNK],
                          tokens[s : s + self.CPU_CHUNK], latents[s : s + self.CPU_CHUNK])
        return [(ids, tokens, latents if self.latents else None)]

    def _finish_rows(self, z: Any, empty: Any) -> tuple[Any, Any, Any]:
        """Tokens (mask token on empty rows), latents (NaN there) and the rows with data whose
        latents are not finite."""
        torch = self.torch
        z = z.float()
        bad = ~torch.isfinite(z).flatten(1).all(1) & ~empty
        tok = self.tok._quantize(z)
        tok[empty] = self.tok.mask_token
        z[empty] = float("nan")
        return tok.to(torch.int32), z, bad

    def _run_cpu(self, ids: np.ndarray, flux: np.ndarray, tokens: np.ndarray, latents: np.ndarray) -> None:
        torch = self.torch
        from .kernels import asinh_compress

        with torch.inference_mode():
            xnp, n_valid = asinh_compress(flux, self.tok.band_offset, self.tok.band_scale, self.buf)
            self.buf = xnp if self.buf is None or len(xnp) > len(self.buf) else self.buf
            x = torch.from_numpy(xnp).permute(0, 3, 1, 2)  # channels-last memory
            empty = torch.from_numpy(n_valid == 0)
            z = self.model.encoder(x)
            tok, z, bad = self._finish_rows(z, empty)
            if bool(bad.any()):
                band_bad = ~np.isfinite(xnp).all(axis=(1, 2))
                self._raise(ids, bad.numpy(), band_bad)
            tokens[:] = tok.numpy()
            latents[:] = z.numpy()

    def _launch_cuda(self, ids: np.ndarray, flux: np.ndarray) -> tuple[Any, ...]:
        torch = self.torch

        with torch.inference_mode():
            f = torch.from_numpy(flux).pin_memory().to(self.device, non_blocking=True)
            x, valid = compress_torch(f, self.off, self.sc)
            band_bad = ~torch.isfinite(x).flatten(2).all(2)
            empty = ~valid.flatten(1).any(1)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                z = self.model.encoder(x)
            tok, z, bad = self._finish_rows(z, empty)
            host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in (tok, bad, band_bad)]
            for h, t in zip(host, (tok, bad, band_bad)):
                h.copy_(t, non_blocking=True)
            zh = None
            if self.latents:
                zh = torch.empty(z.shape, dtype=z.dtype, pin_memory=True)
                zh.copy_(z, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        return event, ids, host[0], zh, host[1], host[2]

    def _drain(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        out = []
        for event, ids, th, zh, bad, band_bad in self.pending:
            event.synchronize()
            if bool(bad.any()):
                self.pending.clear()
                self._raise(ids, bad.numpy(), band_bad.numpy())
            out.append((ids, th.numpy().astype(np.uint16), None if zh is None else zh.numpy().copy()))
        self.pending.clear()
        return out

    def _raise(self, ids: np.ndarray, bad: np.ndarray, band_bad: np.ndarray) -> None:
        rows = np.flatnonzero(bad)
        i = int(rows[0])
        cols = [c for c, b in zip(self.tok.band_columns, band_bad[i]) if b] or self.tok.band_columns
        raise DataError(
            f"{self.source}: {self.label} {int(ids[i])}, columns {cols}: the encoder gives non-finite "
            f"latents for this cutout ({len(rows)} such rows in the batch); pixels out of range "
            "for the band scales"
        )

    def finish(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """The batches still in flight, in order."""
        return self._drain()

    def close(self) -> None:
        """Give the tokenizer back its model on the CPU, in the default memory format."""
        self.pending.clear()
        self.tok._model = self.model.to("cpu", memory_format=self.torch.contiguous_format)


def compress_torch(flux: Any, offset: Any, scale: Any) -> tuple[Any, Any]:
    """:func:`~astromodal_image.network.preprocess` (the device path's range compression), finite
    for every finite pixel: where ``(flux - offset) / scale`` overflows float32, the value is
    ``sign * log(2 |flux - offset| / scale)`` (asinh's value there), computed without overflow."""
    import torch

    from .network import preprocess

    x, valid = preprocess(flux, offset, scale)
    y = (flux - offset.view(1, -1, 1, 1)).abs().log() - scale.log().view(1, -1, 1, 1)
    return torch.where(torch.isinf(x), torch.sign(x) * (y + float(np.log(2.0))), x), valid


def _checked_results(settings: dict[str, Any], where: str) -> dict[str, Any]:
    """Pop the training record (history, val_history, best_epoch) from saved settings, checked;
    a file written before the validation split has no val_history / best_epoch."""
    out: dict[str, Any] = {}
    for name in ("history", "val_history"):
        value = settings.pop(name, [])
        if not isinstance(value, list) or not all(
                isinstance(h, (int, float)) and not isinstance(h, bool) for h in value):
            raise CodecFormatError(f"{where}: {name!r} is not a list of numbers")
        out[name] = [float(h) for h in value]
    best = settings.pop("best_epoch", None)
    if best is not None and (not isinstance(best, int) or isinstance(best, bool) or best < 0):
        raise CodecFormatError(f"{where}: 'best_epoch' {best!r} is not a non-negative integer")
    out["best_epoch"] = best
    return out


def _read_pt(path: Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with clear errors; unwraps ``{"state_dict": ...}``."""
    import torch

    if not path.is_file():
        raise CodecFormatError(f"{path}: file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        if "weights_only" in text or "Unpickl" in type(exc).__name__ or "global" in text.lower():
            raise CodecFormatError(
                f"{path}: refused, the file holds pickled Python objects and only plain tensors "
                f"are loaded (torch.load(..., weights_only=True)): {text.splitlines()[0] if text else exc!r}"
            ) from exc
        raise CodecFormatError(f"{path}: not a readable torch state dict ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        raise CodecFormatError(f"{path}: expected a state dict of name -> tensor, got {type(obj).__name__}")
    return obj


def _pt_config(sd: Mapping[str, Any], path: Path) -> dict[str, Any] | None:
    raw = sd.get(PT_CONFIG_KEY)
    if raw is None:
        return None
    try:
        record = json.loads(bytes(raw.numpy().astype(np.uint8)).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecFormatError(f"{path}: unreadable {PT_CONFIG_KEY!r} record ({exc})") from exc
    if not isinstance(record, dict):
        raise CodecFormatError(f"{path}: the {PT_CONFIG_KEY!r} record is not a JSON object")
    try:
        version = int(record.get("format_version", 1))
    except (TypeError, ValueError):
        raise CodecFormatError(f"{path}: format_version {record.get('format_version')!r} is not an integer") from None
    if version > 1:
        raise CodecFormatError(
            f"{path}: format_version {version} is newer than this astromodal-image "
            "reads (1); upgrade astromodal-image"
        )
    record.pop("format_version", None)
    return record
