"""One codec per scalar column: quantile bins fitted on a sample, mask token for missing values.

A fitted :class:`~astromodal_splus.tokenizer.ScalarTokenizer` hands out these codecs through
``codecs()``; a codec can also be trained on its own (arrays, a modality or parquet files).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from astromodal_core import (
    Codec,
    CodecFormatError,
    DataError,
    Modality,
    ModalityTypeError,
    TokenKey,
)
from astromodal_core.blocks.quantile import BinTable, QuantileBins, missing_mask
from astromodal_core.io import iter_batches, numeric_column
from astromodal_core.modality import to_numpy
from astromodal_core.sampling import BottomK, hash_keys
from astromodal_core.serialize import load_npz, save_npz

from .columns import (
    DEFAULT_SENTINELS,
    REDSHIFT_COLUMN,
    column_kind,
    default_sentinels,
    gaia_column,
    mag_column,
    token_key_name,
)
from .modalities import CatalogScalar, GaiaAstrometry, Redshift, SplusMagnitude

CODEC_KIND = "splus_scalar_codec"
__all__ = [
    "CODEC_CLASSES",
    "AstrometryCodec",
    "CatalogScalarCodec",
    "MagnitudeCodec",
    "RedshiftCodec",
    "ScalarColumnCodec",
    "codec_for_column",
    "missing_mask",
]


class ScalarColumnCodec(Codec):
    """Quantile binning of one canonical column (a one-column
    :class:`~astromodal_core.blocks.QuantileBins`): token ``searchsorted(edges, x, "right")``.

    ``vocab_size = n_bins + 1``; ``mask_token = n_bins`` marks NaN, inf and ``sentinels``
    (default: 99 / -99 for magnitude and magnitude-error columns, none for other columns).
    ``decode`` returns the bin's median training value and the bin width as ``error``
    (NaN for the mask token); ``bin_values`` gives that value for every token id.
    """

    modalities: ClassVar[tuple[type[Modality], ...]] = ()

    def __init__(
        self,
        column: str,
        n_bins: int = 1024,
        *,
        sentinels: Sequence[float] | None = None,
        max_values: int = 2_000_000,
        rng_seed: int = 0,
        backend: str = "auto",
    ):
        self.column = str(column)
        self.sentinels = (
            default_sentinels(self.column, DEFAULT_SENTINELS) if sentinels is None
            else tuple(float(s) for s in sentinels)
        )
        self.quantiles = QuantileBins(n_bins, [self.column], sentinels=self.sentinels, backend=backend)
        self.n_bins = self.quantiles.n_bins
        self.max_values = int(max_values)
        self.rng_seed = int(rng_seed)

    @property
    def backend(self) -> str:
        """The encoding backend: ``auto``, ``numba`` or ``numpy``."""
        return self.quantiles.backend

    @backend.setter
    def backend(self, value: str) -> None:
        self.quantiles.backend = value

    @property
    def bins(self) -> BinTable | None:
        """The fitted bins (None until trained or loaded)."""
        return self.quantiles.tables[0] if self.quantiles.tables is not None else None

    # state ---------------------------------------------------------------------------------
    @property
    def key_name(self) -> str:
        return token_key_name(self.column)

    @property
    def mask_token(self) -> int:
        return self.n_bins

    @property
    def is_fitted(self) -> bool:
        return self.quantiles.is_fitted

    @property
    def effective_bins(self) -> int:
        self.check_fitted()
        assert self.bins is not None
        return self.bins.effective_bins

    @property
    def bin_values(self) -> np.ndarray:
        """Physical value (bin median) of every token id, float64 of length ``vocab_size``.

        NaN for the mask token and for ids ``>= effective_bins`` (bins the fit did not use),
        so a predicted distribution can give those ids no weight.
        """
        self.check_fitted()
        return self.quantiles.token_values()

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        return (
            TokenKey(
                self.key_name,
                self.n_bins + 1,
                layout="scalar",
                modality=self.modalities[0].name,
                description=f"quantile bins of {self.column}; {self.n_bins} = missing",
                mask_token=self.n_bins,
                ordinal=True,
            ),
        )

    def set_bins(self, bins: BinTable) -> ScalarColumnCodec:
        """Install fitted bins (used by the tokenizer and by ``load``)."""
        self.quantiles.set_tables([bins])
        return self

    def _config(self) -> dict[str, Any]:
        assert self.bins is not None
        return {
            "codec": type(self).__name__,
            "column": self.column,
            "n_bins": self.n_bins,
            "sentinels": list(self.sentinels),
            "max_values": self.max_values,
            "rng_seed": self.rng_seed,
            "n_samples": self.bins.n_samples,
        }

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        assert self.bins is not None
        return self._config(), self.bins.arrays("")

    # training ------------------------------------------------------------------------------
    def train(self, sources: Any, **kwargs: Any) -> ScalarColumnCodec:
        """Fit on an array of values, a modality, or parquet path(s) holding ``column``."""
        reservoir = BottomK(self.max_values)
        offset = 0
        for name, values in self._iter_sources(sources):
            values = np.asarray(values, dtype=np.float64).ravel()
            pos = np.arange(offset, offset + len(values), dtype=np.int64)
            offset += len(values)
            ok = ~missing_mask(values, self.sentinels)
            reservoir.add(hash_keys(pos[ok], self.rng_seed, salt=f"{self.column}|{name}"), values[ok])
        sample = reservoir.sample()
        if not len(sample):
            raise DataError(f"{self.column}: no finite, non-sentinel values to train on")
        self.quantiles.fit([sample])
        return self

    def _iter_sources(self, sources: Any) -> Any:
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        if isinstance(sources, Modality):
            yield "", to_numpy(sources.value)
            return
        if isinstance(sources, (list, tuple)) and sources and all(
            isinstance(s, (str, os.PathLike)) for s in sources
        ):
            for path in sources:
                for batch in iter_batches(path, [self.column]):
                    yield str(Path(path).name), numeric_column(batch, self.column, path)
            return
        arr = to_numpy(sources)
        if not np.issubdtype(np.asarray(arr).dtype, np.number):
            raise DataError(f"{self.column}: training values have dtype {np.asarray(arr).dtype}, expected numbers")
        yield "", arr

    # encode / decode -----------------------------------------------------------------------
    def accepts(self, modality: Modality) -> bool:
        """True if the modality's token key is this codec's key."""
        return getattr(modality, "token_key", None) == self.key_name

    def accepts_metadata(self, metadata: Mapping[str, Any]) -> bool:
        """True unless ``metadata`` names another column, band or quantity."""
        if "column" in metadata and metadata["column"] != self.column:
            return False
        return True

    def encode_array(self, values: Any) -> np.ndarray:
        """uint16 tokens of a 1-D array of values in physical units."""
        self.check_fitted()
        return self.quantiles.encode(to_numpy(values), 0)

    def encode(self, modality: Modality) -> dict[str, Any]:
        self.check_fitted()
        if not (self.handles(modality) and self.accepts(modality)):
            raise ModalityTypeError(
                f"{type(self).__name__}({self.column}) cannot encode {type(modality).__name__} "
                f"with token key {getattr(modality, 'token_key', None)!r}"
            )
        return {self.key_name: self.encode_array(modality.value)}

    def decode_array(self, tokens: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(values, widths)`` of tokens: bin medians and widths, NaN for the mask token."""
        self.check_fitted()
        t = np.atleast_1d(to_numpy(tokens))
        return self.quantiles.decode(t), self.quantiles.widths(t)

    def decode(self, tokens: Mapping[str, Any], **metadata: Any) -> Modality:
        if self.key_name not in tokens:
            raise DataError(f"decoding {self.column} needs token key {self.key_name!r}; got {sorted(tokens)}")
        values, widths = self.decode_array(tokens[self.key_name])
        return self._make(values, widths)

    def _make(self, values: np.ndarray, errors: np.ndarray) -> Modality:
        return CatalogScalar(value=values, error=errors, column=self.column)

    # persistence ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``<name>_config.npz`` (JSON config + edges, centers, widths, counts)."""
        self.check_fitted()
        config, arrays = self._state()
        save_npz(path, config, arrays, kind=CODEC_KIND)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> ScalarColumnCodec:
        config, arrays, _ = load_npz(path, kind=CODEC_KIND)
        name = config.get("codec")
        target = CODEC_CLASSES.get(str(name))
        if target is None or not issubclass(target, cls):
            raise CodecFormatError(f"{path}: holds a {name!r} codec, not a {cls.__name__}")
        try:
            codec = target.__new__(target)
            ScalarColumnCodec.__init__(
                codec, config["column"], config["n_bins"], sentinels=config["sentinels"],
                max_values=config["max_values"], rng_seed=config["rng_seed"],
                backend=kwargs.get("backend", "auto"),
            )
            codec.set_bins(BinTable.from_arrays(arrays, "", config["n_samples"], where=f"{path}"))
        except (KeyError, ValueError, TypeError) as exc:
            raise CodecFormatError(f"{path}: incomplete codec state ({exc})") from exc
        return codec


class MagnitudeCodec(ScalarColumnCodec):
    """Codec of one S-PLUS band's magnitude (:class:`SplusMagnitude`)."""

    modalities = (SplusMagnitude,)

    def __init__(self, band: str = "r", n_bins: int = 1024, *, column: str | None = None, **kwargs: Any):
        super().__init__(column or mag_column(band), n_bins, **kwargs)

    @property
    def band(self) -> str:
        return column_kind(self.column)[1] or self.column

    def accepts_metadata(self, metadata: Mapping[str, Any]) -> bool:
        if "band" in metadata and str(metadata["band"]).lower() != self.band:
            return False
        return super().accepts_metadata(metadata)

    def _make(self, values: np.ndarray, errors: np.ndarray) -> Modality:
        return SplusMagnitude(value=values, error=errors, band=self.band)


class AstrometryCodec(ScalarColumnCodec):
    """Codec of one Gaia astrometric quantity (:class:`GaiaAstrometry`)."""

    modalities = (GaiaAstrometry,)

    def __init__(self, quantity: str = "parallax", n_bins: int = 1024, *, column: str | None = None, **kwargs: Any):
        super().__init__(column or gaia_column(quantity), n_bins, **kwargs)

    @property
    def quantity(self) -> str:
        return column_kind(self.column)[1] or self.column

    def accepts_metadata(self, metadata: Mapping[str, Any]) -> bool:
        if "quantity" in metadata and metadata["quantity"] != self.quantity:
            return False
        return super().accepts_metadata(metadata)

    def _make(self, values: np.ndarray, errors: np.ndarray) -> Modality:
        return GaiaAstrometry(value=values, error=errors, quantity=self.quantity)


class RedshiftCodec(ScalarColumnCodec):
    """Codec of the spectroscopic redshift (:class:`Redshift`, token key ``tok_z``)."""

    modalities = (Redshift,)

    def __init__(self, n_bins: int = 1024, *, column: str = REDSHIFT_COLUMN, **kwargs: Any):
        super().__init__(column, n_bins, **kwargs)

    def _make(self, values: np.ndarray, errors: np.ndarray) -> Modality:
        return Redshift(value=values, error=errors)


class CatalogScalarCodec(ScalarColumnCodec):
    """Codec of any other catalogue column (:class:`CatalogScalar`)."""

    modalities = (CatalogScalar,)


CODEC_CLASSES: dict[str, type[ScalarColumnCodec]] = {
    c.__name__: c for c in (MagnitudeCodec, AstrometryCodec, RedshiftCodec, CatalogScalarCodec)
}


def codec_for_column(column: str, n_bins: int, **kwargs: Any) -> ScalarColumnCodec:
    """An unfitted codec of the right class for a canonical column."""
    kind, _ = column_kind(column)
    if kind == "magnitude":
        return MagnitudeCodec(n_bins=n_bins, column=column, **kwargs)
    if kind == "astrometry":
        return AstrometryCodec(n_bins=n_bins, column=column, **kwargs)
    if kind == "redshift":
        return RedshiftCodec(n_bins=n_bins, column=column, **kwargs)
    return CatalogScalarCodec(column, n_bins, **kwargs)
