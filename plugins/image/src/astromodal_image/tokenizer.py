"""ImageTokenizer: a convolutional autoencoder plus a k-means codebook over its latent grid.

Seed API (astromodal tokenizers, ImageTokenizer section)::

    tokenizer = ImageTokenizer(cutout_size=96, bands=[...], latent_dim=2, codebook_size=1024)
    tokenizer.load("autoencoder_splus_cuts.pt")          # on an instance: loads weights into it
    result = tokenizer.encode("datacube_test.parquet", batch_size=32)
    tokenizer.save("image_tokenizer_config.npz")
    tokenizer = ImageTokenizer.load("image_tokenizer_config.npz", device="cuda")  # on the class

Missing data: NaN pixels and absent bands are masked (zero input, excluded from the loss); a
row with no valid pixel at all encodes to the mask token ``codebook_size`` on every grid cell
and NaN latents. torch is imported only when a method needs it.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from astromodal_core import CodecFormatError, ConfigError, DataError, NotFittedError, TokenKey
from astromodal_core.sampling import BottomK, hash_keys
from astromodal_core.serialize import (
    atomic_path,
    fingerprint,
    load_npz,
    load_safetensors,
    save_npz,
    save_safetensors,
)

from .kmeans import kmeans
from .modality import (
    DEFAULT_CHANNELS,
    DEFAULT_CODEBOOK_SIZE,
    DEFAULT_CUTOUT_SIZE,
    DEFAULT_LATENT_DIM,
    SPLUS_BANDS,
    SPLUS_TOKEN_KEY,
    image_token_key,
)
from .storage import DEFAULT_PREFIX, band_column, iter_cutouts, prefetched

KIND = "image_tokenizer"
PT_CONFIG_KEY = "astromodal_config"
_EXTRA_PT_KEYS = ("codebook", "band_offset", "band_scale", PT_CONFIG_KEY)
_ARCH_FIELDS = ("cutout_size", "bands", "latent_dim", "codebook_size", "channels")
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


class ImageTokenizer:
    """Multi-band cutouts -> (H', W') grid of codebook tokens, through a conv autoencoder.

    ``cutout_size`` must be divisible by ``2 ** len(channels)`` (the downsampling factor);
    the token grid is ``cutout_size // 2 ** len(channels)`` on a side. Cutouts are read from
    ``<column_prefix><band>`` columns (see :mod:`astromodal_image.storage`). Training keeps a
    bottom-k reservoir of ``max_cutouts`` rows (about 2 x 0.44 MB each at 96x96x12, so the
    default 1000 holds ~1 GB); the k-means sees at most ``max_codebook_vectors`` latent cells.
    """

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
        batch_size: int = 64,
        lr: float = 2e-3,
        device: str | None = None,
    ):
        self.cutout_size = int(cutout_size)
        self.bands = [str(b) for b in bands]
        self.latent_dim = int(latent_dim)
        self.codebook_size = int(codebook_size)
        self.channels = [int(c) for c in channels]
        self.token_key = str(token_key)
        self.column_prefix = str(column_prefix)
        self.id_col = str(id_col)
        self.rng_seed = int(rng_seed)
        self.max_cutouts = int(max_cutouts)
        self.max_codebook_vectors = int(max_codebook_vectors)
        self.kmeans_iter = int(kmeans_iter)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self._validate()
        self.device = str(device) if device is not None else "cpu"
        self.band_offset: np.ndarray | None = None
        self.band_scale: np.ndarray | None = None
        self.codebook: np.ndarray | None = None
        self.history: list[float] = []
        self._model: Any = None
        self._has_weights = False
        image_token_key(self.token_key, codebook_size=self.codebook_size, grid=self.grid_shape)

    def _validate(self) -> None:
        if not self.bands:
            raise ValueError("ImageTokenizer needs at least one band")
        if len(set(self.bands)) != len(self.bands):
            raise ValueError(f"ImageTokenizer: duplicate bands in {self.bands}")
        if not self.channels:
            raise ValueError("ImageTokenizer: channels needs at least one stage")
        for name in ("cutout_size", "latent_dim", "codebook_size", "max_cutouts", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ImageTokenizer: {name} must be >= 1, got {getattr(self, name)}")
        if self.codebook_size > 65535:
            raise ValueError(f"ImageTokenizer: codebook_size {self.codebook_size} > 65535 does not fit uint16")
        if self.cutout_size % self.downsample:
            raise ValueError(
                f"ImageTokenizer: cutout_size {self.cutout_size} is not divisible by the "
                f"downsampling factor {self.downsample} (2 ** {len(self.channels)} stages)"
            )

    # construction ----------------------------------------------------------------------------
    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> ImageTokenizer:
        """A tokenizer from the ``tokenizers.image`` section of config.yaml."""
        import inspect

        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        items = section.to_dict() if hasattr(section, "to_dict") else dict(section)
        for key in items:
            if key not in allowed:
                raise ConfigError(
                    f"tokenizers.image: unknown key {key!r}; allowed: {sorted(allowed)}"
                )
        return cls(**items)

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
        """The one grid token key this tokenizer writes."""
        return (image_token_key(self.token_key, codebook_size=self.codebook_size, grid=self.grid_shape),)

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

    def get_config(self) -> dict[str, Any]:
        """Every constructor argument (JSON-able)."""
        return {
            **self.architecture(),
            "token_key": self.token_key,
            "column_prefix": self.column_prefix,
            "id_col": self.id_col,
            "rng_seed": self.rng_seed,
            "max_cutouts": self.max_cutouts,
            "max_codebook_vectors": self.max_codebook_vectors,
            "kmeans_iter": self.kmeans_iter,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
        }

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        self.check_fitted()
        config = {**self.architecture(), "token_key": self.token_key}
        arrays = {f"model.{k}": v for k, v in self._weights_numpy().items()}
        arrays["codebook"] = self.codebook
        arrays["band_offset"] = self.band_offset
        arrays["band_scale"] = self.band_scale
        return config, arrays

    @property
    def fingerprint(self) -> str:
        """A hash of the architecture, weights, scales and codebook."""
        config, arrays = self._state()
        return fingerprint(config, arrays)

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
        return {k: v.detach().cpu().numpy() for k, v in self._ensure_model().state_dict().items()}

    # sampling and training -------------------------------------------------------------------
    def sample_file(self, path: PathLike) -> BottomK:
        """A bottom-k reservoir of one file's cutouts with any valid pixel (mergeable)."""
        res = BottomK(self.max_cutouts, width=len(self.bands) * self.cutout_size**2, dtype=np.float32)
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
        """Merge per-file reservoirs from :meth:`sample_file` and fit on the result."""
        merged = BottomK(self.max_cutouts, width=len(self.bands) * self.cutout_size**2, dtype=np.float32)
        for s in states:
            merged.merge(s)
        sample = merged.sample()
        flux = sample.reshape(len(sample), len(self.bands), self.cutout_size, self.cutout_size)
        return self.fit_arrays(flux, **train_kwargs)

    def train(
        self,
        parquet_files: PathLike | Sequence[PathLike],
        *,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float | None = None,
        device: str | None = None,
        checkpoint_dir: PathLike | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> ImageTokenizer:
        """Train the autoencoder and the codebook on cutouts sampled from parquet datacubes."""
        files = [parquet_files] if isinstance(parquet_files, (str, os.PathLike)) else list(parquet_files)
        if not files:
            raise DataError("ImageTokenizer.train: no parquet files given")
        states = [self.sample_file(f) for f in files]
        if sum(len(s) for s in states) == 0:
            raise DataError(
                f"{', '.join(str(f) for f in files)}: no cutout with a valid pixel in columns "
                f"{self.band_columns}; nothing to train on"
            )
        return self.fit_from_samples(
            states, epochs=epochs, batch_size=batch_size, lr=lr, device=device,
            checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
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
        progress: bool = True,
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
        model = self._new_model()
        self.history = train_autoencoder(
            model, x, valid,
            epochs=int(epochs or self.epochs), batch_size=int(batch_size or self.batch_size),
            lr=float(lr or self.lr), seed=self.rng_seed, device=dev,
            config={**self.architecture(), "rng_seed": self.rng_seed,
                    "band_offset": self.band_offset.tolist(), "band_scale": self.band_scale.tolist()},
            checkpoint_dir=checkpoint_dir, resume=resume, progress=progress,
        )
        self._model = model.to("cpu").eval()
        self._has_weights = True
        self.codebook = None
        with torch.inference_mode():
            latents = self._latents_of(x, valid, dev)
        self._fit_codebook_from_latents(latents, source)
        return self

    def fit_codebook(self, parquet_files: PathLike | Sequence[PathLike], *, device: str | None = None) -> ImageTokenizer:
        """Fit only the k-means codebook, keeping loaded weights and band scales."""
        import torch

        if not self._has_weights or self.band_scale is None:
            raise NotFittedError(
                "ImageTokenizer.fit_codebook needs autoencoder weights and per-band scales "
                f"first (missing: {', '.join(self.missing_state())})"
            )
        files = [parquet_files] if isinstance(parquet_files, (str, os.PathLike)) else list(parquet_files)
        merged = BottomK(self.max_cutouts, width=len(self.bands) * self.cutout_size**2, dtype=np.float32)
        for f in files:
            merged.merge(self.sample_file(f))
        sample = merged.sample()
        flux = sample.reshape(len(sample), len(self.bands), self.cutout_size, self.cutout_size)
        x, valid = self._preprocess_cpu(flux)
        with torch.inference_mode():
            latents = self._latents_of(x, valid, resolve_device(device or self.device))
        self._fit_codebook_from_latents(latents, ", ".join(str(f) for f in files))
        return self

    def _check_flux(self, flux: np.ndarray, source: str) -> np.ndarray:
        flux = np.asarray(flux, dtype=np.float32)
        want = (len(self.bands), self.cutout_size, self.cutout_size)
        if flux.ndim != 4 or flux.shape[1:] != want:
            raise DataError(f"{source}: cutouts have shape {flux.shape[1:]}, expected {want} (bands, H, W)")
        if np.isinf(flux).any():
            row = int(np.flatnonzero(np.isinf(flux).any(axis=(1, 2, 3)))[0])
            raise DataError(f"{source}: row {row} holds infinite pixels; use NaN for missing pixels")
        return flux

    def _fit_scales(self, flux: np.ndarray, source: str) -> None:
        """Per-band sky level (median) and sky noise (1.4826 * MAD) of the training pixels."""
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
            if not mad > 0:
                mad = float(np.std(pix)) or 1.0
            offset[j], scale[j] = med, mad
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

    def _latents_of(self, x: Any, valid: Any, device: Any, chunk: int = 256) -> np.ndarray:
        """Latent grids (n, D, H', W') of preprocessed cutouts; NaN for rows with no data."""
        import torch

        model = self._ensure_model().to(device)
        out = []
        for s in range(0, len(x), chunk):
            xb = x[s : s + chunk].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                z = model.encoder(xb)
            z = z.float().cpu()
            empty = ~valid[s : s + chunk].flatten(1).any(1)
            z[empty] = float("nan")
            out.append(z.numpy())
        self._model = model.to("cpu")
        return np.concatenate(out) if out else np.empty((0, self.latent_dim, *self.grid_shape), np.float32)

    def _fit_codebook_from_latents(self, latents: np.ndarray, source: str) -> None:
        vecs = latents.transpose(0, 2, 3, 1).reshape(-1, self.latent_dim)
        vecs = vecs[np.isfinite(vecs).all(1)]
        if len(vecs) > self.max_codebook_vectors:
            rng = np.random.default_rng(self.rng_seed)
            vecs = vecs[np.sort(rng.choice(len(vecs), self.max_codebook_vectors, replace=False))]
        if len(vecs) < self.codebook_size:
            raise DataError(
                f"{source}: {len(vecs)} latent vectors for a codebook of {self.codebook_size}; "
                "add cutouts (max_cutouts) or lower codebook_size"
            )
        self.codebook = kmeans(vecs, self.codebook_size, n_iter=self.kmeans_iter, seed=self.rng_seed)

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
        dev = resolve_device(device or self.device)
        n = len(flux)
        tokens = np.empty((n, *self.grid_shape), dtype=np.uint16)
        latents = np.empty((n, self.latent_dim, *self.grid_shape), dtype=np.float32)
        runner = _EncodeRunner(self, dev)
        for s in range(0, n, batch_size):
            runner.submit(flux[s : s + batch_size], tokens, latents, s)
        runner.finish(tokens, latents)
        return tokens, latents

    def encode(
        self,
        path: PathLike,
        batch_size: int = 32,
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
        from tqdm.auto import tqdm

        from astromodal_core.io import num_rows

        self.check_fitted()
        id_col = id_col or self.id_col
        dev = resolve_device(device or self.device)
        n = num_rows(path)
        tokens = np.empty((n, *self.grid_shape), dtype=np.uint16)
        latents = np.empty((n, self.latent_dim, *self.grid_shape), dtype=np.float32)
        ids = np.empty(n, dtype=np.int64)
        runner = _EncodeRunner(self, dev)
        prefetch = dev.type == "cuda" if prefetch is None else prefetch
        start = 0
        batches = iter_cutouts(
            path, self.bands, self.cutout_size, batch_size=batch_size, id_col=id_col,
            prefix=self.column_prefix, buffers=3 if prefetch else 1,
        )
        if prefetch:
            batches = prefetched(batches)
        with tqdm(total=n, desc="image encode", unit="cutout", disable=not progress) as bar:
            for batch_ids, flux in batches:
                m = len(batch_ids)
                ids[start : start + m] = batch_ids
                runner.submit(flux, tokens, latents, start)
                start += m
                bar.update(m)
            runner.finish(tokens, latents)
        if start != n:
            raise DataError(f"{path}: footer says {n} rows but {start} were read")
        return {"image_tokens": tokens, "image_latents": latents, "ids": ids, "id_col": id_col}

    def to_token_columns(self, result: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The seed dict as token-store columns: ``{token_key: (n, H', W') uint16}``."""
        return {self.token_key: np.asarray(result["image_tokens"], dtype=np.uint16)}

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
                f"{self.token_key}: tokens have shape {tokens.shape}, expected (n, {self.grid_shape[0]}, "
                f"{self.grid_shape[1]})"
            )
        if tokens.size and (tokens.min() < 0 or tokens.max() > self.mask_token):
            raise DataError(
                f"{self.token_key}: tokens outside [0, {self.mask_token}] "
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

    # saving and loading ----------------------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """``*.npz``: config + scales, with weights and codebook in a ``.safetensors`` beside it.

        ``*.pt``: one torch state dict of tensors only (weights, ``codebook``, ``band_offset``,
        ``band_scale`` and the architecture as JSON bytes in ``astromodal_config``), loadable
        with ``torch.load(..., weights_only=True)`` and by :meth:`load` on an instance.
        """
        path = Path(path)
        if path.suffix == ".pt":
            self._save_pt(path)
            return
        if path.suffix != ".npz":
            raise ValueError(f"{path}: save to a .npz (config) or a .pt (weights) file")
        self.check_fitted()
        weights = path.with_suffix(".safetensors")
        arrays = {f"model.{k}": v for k, v in self._weights_numpy().items()}
        arrays["codebook"] = self.codebook
        wfp = save_safetensors(weights, arrays, {"architecture": self.architecture()})
        config = {
            "tokenizer": "image",
            "class": "ImageTokenizer",
            **self.get_config(),
            "weights_file": weights.name,
            "weights_fingerprint": wfp,
            "history": list(self.history),
        }
        save_npz(path, config, {"band_offset": self.band_offset, "band_scale": self.band_scale}, kind=KIND)

    def _save_pt(self, path: Path) -> None:
        import torch

        sd = {k: v.detach().cpu().clone() for k, v in self._ensure_model().state_dict().items()}
        if not self._has_weights:
            raise NotFittedError("ImageTokenizer has no autoencoder weights to save")
        if self.codebook is not None:
            sd["codebook"] = torch.from_numpy(self.codebook.copy())
        if self.band_offset is not None and self.band_scale is not None:
            sd["band_offset"] = torch.from_numpy(self.band_offset.copy())
            sd["band_scale"] = torch.from_numpy(self.band_scale.copy())
        raw = json.dumps({**self.architecture(), "format_version": 1}).encode()
        sd[PT_CONFIG_KEY] = torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()
        with atomic_path(path, suffix=".pt") as tmp:
            torch.save(sd, tmp)

    @classmethod
    def _load_new(cls, path: PathLike, device: str | None = None, **overrides: Any) -> ImageTokenizer:
        """Read a tokenizer written by :meth:`save` (.npz, or a .pt that records its architecture)."""
        path = Path(path)
        if path.suffix == ".pt":
            sd = _read_pt(path)
            arch = _pt_config(sd, path)
            if arch is None:
                raise CodecFormatError(
                    f"{path}: holds bare weights without an {PT_CONFIG_KEY!r} record; construct "
                    "ImageTokenizer(cutout_size=..., bands=[...], ...) and call .load(path) on it"
                )
            arch.pop("format_version", None)
            tok = cls(**{**arch, **overrides})
            tok._apply_pt(sd, path)
        else:
            config, arrays, _ = load_npz(path, kind=KIND)
            if config.get("tokenizer") != "image":
                raise CodecFormatError(f"{path}: not an image tokenizer file")
            init = {k: v for k, v in config.items() if k not in
                    ("tokenizer", "class", "weights_file", "weights_fingerprint", "history")}
            try:
                tok = cls(**{**init, **overrides})
            except TypeError as exc:
                raise CodecFormatError(f"{path}: unreadable image tokenizer config ({exc})") from exc
            weights, _ = load_safetensors(
                path.parent / config["weights_file"], expected_fingerprint=config["weights_fingerprint"]
            )
            tok._set_weights({k[6:]: v for k, v in weights.items() if k.startswith("model.")}, path)
            tok.codebook = np.asarray(weights["codebook"], dtype=np.float32)
            tok.band_offset = np.asarray(arrays["band_offset"], dtype=np.float32)
            tok.band_scale = np.asarray(arrays["band_scale"], dtype=np.float32)
            tok.history = [float(h) for h in config.get("history", [])]
        tok.device = str(resolve_device(device))
        return tok

    def _load_into(self, path: PathLike, device: str | None = None) -> ImageTokenizer:
        """Load a ``.pt`` state dict (or a saved ``.npz``) into this tokenizer; return it."""
        path = Path(path)
        if path.suffix != ".pt":
            # The file's architecture must be this tokenizer's: only the fitted state (weights,
            # codebook, band scales, history) is taken from it; the settings stay this instance's.
            other = type(self)._load_new(path, device=device or self.device)
            self._check_architecture(other.architecture(), path)
            self._model, self._has_weights = other._model, other._has_weights
            self.codebook, self.history = other.codebook, other.history
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
        arch = _pt_config(sd, path)
        if arch is not None:
            arch.pop("format_version", None)
            self._check_architecture(arch, path)
        weights = {k: v.numpy() for k, v in sd.items() if k not in _EXTRA_PT_KEYS}
        self._set_weights(weights, path)
        cb = sd.get("codebook")
        if cb is not None:
            if tuple(cb.shape) != (self.codebook_size, self.latent_dim):
                raise CodecFormatError(
                    f"{path}: codebook has shape {tuple(cb.shape)}, expected "
                    f"({self.codebook_size}, {self.latent_dim}) for codebook_size={self.codebook_size}, "
                    f"latent_dim={self.latent_dim}"
                )
            self.codebook = cb.numpy().astype(np.float32)
        else:
            self.codebook = None
        if "band_scale" in sd and "band_offset" in sd:
            off, sc = sd["band_offset"].numpy(), sd["band_scale"].numpy()
            if off.shape != (len(self.bands),) or sc.shape != (len(self.bands),):
                raise CodecFormatError(
                    f"{path}: band scales hold {sc.shape[0]} bands, this tokenizer has {len(self.bands)}"
                )
            self.band_offset, self.band_scale = off.astype(np.float32), sc.astype(np.float32)
        else:
            self.band_offset = self.band_scale = None

    def _set_weights(self, weights: Mapping[str, np.ndarray], path: Path) -> None:
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
                f"{path}: weights do not fit this architecture ({self.architecture()}){hint}; "
                f"mismatched tensors:\n" + "\n".join(lines)
            )
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
        self._model = model.eval()
        self._has_weights = True


class _EncodeRunner:
    """Runs the encoder on batches; on CUDA with pinned memory, non-blocking copies, bf16 and
    results copied back while the host reads the next batch. On CPU, batches run in chunks of
    ``CPU_CHUNK`` rows so the activations stay small."""

    CPU_CHUNK = 64

    def __init__(self, tok: ImageTokenizer, device: Any):
        import torch

        self.torch = torch
        self.tok = tok
        self.device = device
        self.cuda = device.type == "cuda"
        self.model = tok._ensure_model().to(device).eval()
        if not self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.off, self.sc = tok._scales_torch(device)
        self.buf: np.ndarray | None = None
        self.pending: list[tuple[Any, Any, Any, int]] = []

    def submit(self, flux: np.ndarray, tokens: np.ndarray, latents: np.ndarray, start: int) -> None:
        """Encode one batch into ``tokens[start:]`` / ``latents[start:]`` (on CUDA, later)."""
        step = len(flux) if self.cuda else self.CPU_CHUNK
        for s in range(0, len(flux), step):
            self._submit(flux[s : s + step], tokens, latents, start + s)

    def _submit(self, flux: np.ndarray, tokens: np.ndarray, latents: np.ndarray, start: int) -> None:
        torch = self.torch
        from .kernels import asinh_compress
        from .network import preprocess

        n = len(flux)
        with torch.inference_mode():
            if self.cuda:
                x = torch.from_numpy(flux).pin_memory().to(self.device, non_blocking=True)
                x, valid = preprocess(x, self.off, self.sc)
                empty = ~valid.flatten(1).any(1)
            else:
                xnp, n_valid = asinh_compress(flux, self.tok.band_offset, self.tok.band_scale, self.buf)
                self.buf = xnp if self.buf is None or len(xnp) > len(self.buf) else self.buf
                x = torch.from_numpy(xnp).permute(0, 3, 1, 2)  # channels-last memory
                empty = torch.from_numpy(n_valid == 0)
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
                z = self.model.encoder(x)
            z = z.float()
            tok = self.tok._quantize(z)
            tok[empty] = self.tok.mask_token
            z[empty] = float("nan")
            tok = tok.to(torch.int32)
            if self.cuda:
                zh = torch.empty(z.shape, dtype=z.dtype, pin_memory=True)
                th = torch.empty(tok.shape, dtype=tok.dtype, pin_memory=True)
                zh.copy_(z, non_blocking=True)
                th.copy_(tok, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
                self._drain(tokens, latents)
                self.pending.append((event, th, zh, start))
            else:
                tokens[start : start + n] = tok.numpy()
                latents[start : start + n] = z.numpy()

    def _drain(self, tokens: np.ndarray, latents: np.ndarray) -> None:
        for event, th, zh, start in self.pending:
            event.synchronize()
            n = th.shape[0]
            tokens[start : start + n] = th.numpy()
            latents[start : start + n] = zh.numpy()
        self.pending.clear()

    def finish(self, tokens: np.ndarray, latents: np.ndarray) -> None:
        self._drain(tokens, latents)
        self.tok._model = self.model.to("cpu", memory_format=self.torch.contiguous_format)


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
        arch = json.loads(bytes(raw.numpy().astype(np.uint8)).decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecFormatError(f"{path}: unreadable {PT_CONFIG_KEY!r} record ({exc})") from exc
    if int(arch.get("format_version", 1)) > 1:
        raise CodecFormatError(
            f"{path}: format_version {arch['format_version']} is newer than this astromodal-image "
            "reads (1); upgrade astromodal-image"
        )
    return arch
