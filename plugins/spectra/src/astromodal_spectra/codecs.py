"""Codecs: one group of a SpectrumTokenizer as a Codec of its modality (CodecManager path)."""

from __future__ import annotations

import abc
import os
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from astromodal_core.codec import Codec, Tokens
from astromodal_core.errors import CodecFormatError, DataError, TokenKeyError
from astromodal_core.modality import Modality, TokenKey, to_numpy

from .group_model import GroupModel
from .groups import normalise_group
from .modalities import DESISpectrum, GaiaXPSpectrum, ZTFLightCurve
from .points import MAG_SENTINEL, Points
from .sampler import GroupSample

PathLike = str | os.PathLike[str]


def _f64(a: Any) -> np.ndarray:
    return np.asarray(to_numpy(a), dtype=np.float64)


class SpectrumGroupCodec(Codec):
    """Base of the per-group codecs; ``group`` is a group dict (see SpectrumTokenizer)."""

    kind: ClassVar[str] = ""
    default_group: ClassVar[dict[str, Any]] = {}

    def __init__(self, group: Mapping[str, Any] | None = None, *, codebook_size: int = 256,
                 norm_bins: int = 256, max_features: int = 2_000_000,
                 max_points_per_row: int = 100_000, n_iter: int = 20, rng_seed: int = 0,
                 model: GroupModel | None = None):
        if model is not None:
            self.model = model
        else:
            spec = normalise_group(dict(group or self.default_group))
            if spec["kind"] != self.kind:
                raise ValueError(f"{type(self).__name__} needs a {self.kind!r} group, "
                                 f"got {spec['kind']!r}")
            self.model = GroupModel(spec, codebook_size, norm_bins)
        self.max_features = int(max_features)
        self.max_points_per_row = int(max_points_per_row)
        self.n_iter = int(n_iter)
        self.rng_seed = int(rng_seed)
        self._fitted = model is not None

    # keys ---------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return str(self.model.spec["token_key"])

    @property
    def token_keys(self) -> tuple[TokenKey, ...]:
        m = self.model
        layout = "ragged" if m.ragged else "sequence"
        length = m.n_tokens if m.length is not None else 1
        modality = self.modalities[0].name
        name = m.spec["name"]
        what = "shape" if m.level_shape else "k-means"
        keys = [TokenKey(self.key, m.codebook_size + 1, layout, max_length=length,
                         modality=modality, mask_token=m.codebook_size,
                         description=f"{name}: {what} tokens of {m.patch} point(s) each")]
        about = {"_norm": "per-object normalisation",
                 "_noise": "per-object noise (median sigma / flux scale)",
                 "_level": f"mean flux of each patch of {m.patch} pixels",
                 "_time": f"days since the first point, per patch ({m.spec.get('time_step')}-day bins)"}
        for sfx in m.suffixes[1:]:
            vocab = m.vocab(sfx) if (sfx != "_time" or m.time_bins) else 2
            scalar = sfx in ("_norm", "_noise")
            keys.append(TokenKey(f"{self.key}{sfx}", vocab, "scalar" if scalar else layout,
                                 max_length=1 if scalar else length, modality=modality,
                                 mask_token=vocab - 1, ordinal=True,
                                 description=f"{name}: {about[sfx]}"))
        return tuple(keys)

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def accepts(self, modality: Modality) -> bool:
        return modality.token_key == self.key

    def accepts_metadata(self, metadata: Mapping[str, Any]) -> bool:
        return all(metadata.get(k, v) == v for k, v in self._identity().items())

    def _identity(self) -> dict[str, Any]:
        return {}

    # modality <-> points ----------------------------------------------------------------
    @abc.abstractmethod
    def to_points(self, modality: Modality) -> Points:
        """The modality's rows as validated, padded points."""

    @abc.abstractmethod
    def from_arrays(self, arrays: dict[str, np.ndarray], n: int, **metadata: Any) -> Modality:
        """A modality from decoded ``value`` / ``sigma`` / ``valid`` (/ ``time``) arrays."""

    # codec contract -----------------------------------------------------------------------
    def train(self, sources: Any, **kwargs: Any) -> SpectrumGroupCodec:
        """Fit on a modality batch (or a list of them), or on parquet path(s); return self."""
        mods = sources if isinstance(sources, (list, tuple)) else [sources]
        if mods and all(isinstance(m, Modality) for m in mods):
            sample = GroupSample(self.model.spec, seed=self.rng_seed,
                                 max_features=self.max_features,
                                 max_rows_per_file=max(len(m) for m in mods),
                                 max_points_per_row=self.max_points_per_row)
            for j, m in enumerate(mods):
                pts = self.to_points(m)
                ids = np.arange(len(m), dtype=np.int64) + (j << 40)
                sample.add(pts, ids, sample.scan(pts, ids))
                sample.end_file()
            if len(sample.vectors) == 0:
                raise DataError(f"{type(self).__name__}: no valid points in the training data")
            self.model.fit(sample.vectors.sample(), sample.norms.sample(), sample.max_len,
                           seed=self.rng_seed, n_iter=self.n_iter, max_span=sample.max_span)
        else:
            from .tokenizer import SpectrumTokenizer

            tok = SpectrumTokenizer(self.model.codebook_size, self.max_features,
                                    groups=[self.model.spec], norm_bins=self.model.norm_bins,
                                    n_iter=self.n_iter, rng_seed=self.rng_seed, progress=False,
                                    **kwargs)
            tok.train(sources)
            self.model = tok.models[self.model.spec["name"]]
        self._fitted = True
        return self

    def encode(self, modality: Modality) -> dict[str, Any]:
        self.check_fitted()
        pts = self.to_points(modality)
        m = self.model
        if pts.value.shape[1] > m.length:
            if not (m.ragged and m.kind == "ztf_mag_err"):
                raise DataError(f"{type(self).__name__}: {pts.value.shape[1]} points per row, "
                                f"more than the {m.length} it was trained for")
            pts = _first_points(pts, m.length, str(m.spec["name"]))
        short = self.model.length - pts.value.shape[1]
        if short > 0 and self.model.kind != "gaiaxpy_xp":  # pad to the trained length
            def widen(a: np.ndarray | None, fill: float) -> np.ndarray | None:
                return None if a is None else np.pad(a, ((0, 0), (0, short)), constant_values=fill)

            pts = Points(widen(pts.value, np.nan), widen(pts.sigma, np.nan),
                         widen(pts.valid, False), pts.lengths, widen(pts.time, 0.0))
        toks, counts = self.model.encode_points(pts)
        return {f"{self.key}{sfx}": tok if tok.ndim == 1 else self._layout(tok, pts.lengths > 0, counts)
                for sfx, tok in toks.items()}

    def _layout(self, tok: np.ndarray, present: np.ndarray, counts: np.ndarray | None) -> Any:
        from .tokenizer import ragged_rows

        return tok if counts is None else ragged_rows(tok, counts)

    def tokens_from_result(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The codec's token dict from a SpectrumTokenizer.encode result."""
        name = self.model.spec["name"]
        out: dict[str, Any] = {}
        for sfx in self.model.suffixes:
            value = result.get(f"tokens_{name}{sfx}")
            if value is None:
                value = (result[f"tokens_{name}{sfx}_flat"], result[f"tokens_{name}{sfx}_indptr"])
            out[f"{self.key}{sfx}"] = value
        return out

    def _rect(self, tokens: Tokens) -> dict[str, np.ndarray]:
        """``{suffix: tokens}`` with ragged keys as rectangular rows padded with the mask."""
        from .tokenizer import rect_rows

        m = self.model
        out: dict[str, np.ndarray] = {}
        for sfx in m.suffixes:
            k = f"{self.key}{sfx}"
            if k not in tokens:
                raise TokenKeyError(f"{type(self).__name__}.decode needs token key {k!r}; "
                                    f"got {sorted(tokens)}")
            value = tokens[k]
            if isinstance(value, tuple):
                flat, indptr = (np.asarray(to_numpy(v)) for v in value)
                out[sfx] = rect_rows(flat, indptr, m.n_tokens, m.vocab(sfx) - 1,
                                     f"{type(self).__name__}.decode: {k}")
            else:
                out[sfx] = np.asarray(to_numpy(value))
        return out

    def decode(self, tokens: Tokens, **metadata: Any) -> Modality:
        self.check_fitted()
        rect = self._rect(tokens)
        arrays = self.model.decode_tokens(rect)
        return self.from_arrays(arrays, len(rect["_norm"].reshape(-1)), **metadata)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self.model.config(), self.model.arrays()

    def as_tokenizer(self) -> Any:
        """This fitted codec as a one-group :class:`SpectrumTokenizer` (what :meth:`save` writes)."""
        from .tokenizer import SpectrumTokenizer

        self.check_fitted()
        m = self.model
        tok = SpectrumTokenizer(m.codebook_size, self.max_features, groups=[m.spec],
                                norm_bins=m.norm_bins, max_points_per_row=self.max_points_per_row,
                                n_iter=self.n_iter, rng_seed=self.rng_seed, progress=False)
        tok.models = {m.spec["name"]: m}
        tok.groups = [m.spec]
        return tok

    def save(self, path: PathLike) -> None:
        """Write the codec as a one-group spectrum tokenizer file (and its codebook companion)."""
        self.as_tokenizer().save(path)

    @classmethod
    def load(cls, path: PathLike, **kwargs: Any) -> SpectrumGroupCodec:
        """Read a codec written by :meth:`save` (or a one-group SpectrumTokenizer file)."""
        from .tokenizer import SpectrumTokenizer

        tok = SpectrumTokenizer.load(path, progress=False)
        models = list(tok.models.values())
        if len(models) != 1 or models[0].kind != cls.kind:
            held = [f"{m.spec['name']} ({m.kind})" for m in models]
            raise CodecFormatError(f"{path}: holds spectrum groups {held}, not the one "
                                   f"{cls.kind!r} group of a {cls.__name__}")
        settings = {"max_features": tok.max_features_per_group, "n_iter": tok.n_iter,
                    "max_points_per_row": tok.max_points_per_row, "rng_seed": tok.rng_seed}
        return cls(model=models[0], **{**settings, **kwargs})


def _first_points(pts: Points, length: int, name: str) -> Points:
    """The first ``length`` points of each row (a warning counts the longer rows)."""
    over = int(np.count_nonzero(pts.lengths > length))
    if over:
        warnings.warn(f"group {name!r}: {over} light curve(s) longer than the {length} points "
                      "it was trained for keep their first points", RuntimeWarning, stacklevel=3)
    return Points(pts.value[:, :length], pts.sigma[:, :length], pts.valid[:, :length],
                  np.minimum(pts.lengths, length),
                  None if pts.time is None else pts.time[:, :length])


def _mask_of(modality: Any, shape: tuple[int, ...]) -> np.ndarray:
    m = getattr(modality, "mask", None)
    return np.zeros(shape, dtype=bool) if m is None else np.asarray(to_numpy(m), dtype=bool)


def _check_finite(name: str, what: str, a: np.ndarray) -> None:
    if np.isinf(a).any():
        row = int(np.argwhere(np.isinf(a))[0][0])
        raise DataError(f"{name}: row {row}: {what} holds inf")


class DESISpectrumCodec(SpectrumGroupCodec):
    """DESISpectrum (one arm) <-> ``tok_spectrum_desi_<arm>`` + its ``_norm`` key (and
    ``_level`` / ``_noise`` keys with ``encoding: level_shape``)."""

    modalities = (DESISpectrum,)
    kind = "flux_ivar"
    default_group = {"name": "desi_b", "kind": "flux_ivar"}

    @property
    def arm(self) -> str:
        return str(self.model.spec["name"]).rsplit("_", 1)[-1]

    def _identity(self) -> dict[str, Any]:
        return {"arm": self.arm}

    def to_points(self, modality: Modality) -> Points:
        flux, ivar = _f64(modality.flux), _f64(modality.ivar)
        if flux.shape != ivar.shape or flux.ndim != 2:
            raise DataError(f"DESISpectrum: flux {flux.shape} and ivar {ivar.shape} must be "
                            "equal (n, L) arrays")
        _check_finite("DESISpectrum", "flux", flux)
        _check_finite("DESISpectrum", "ivar", ivar)
        if (ivar < 0).any():
            row = int(np.argwhere(ivar < 0)[0][0])
            raise DataError(f"DESISpectrum: row {row}: ivar holds negative values")
        valid = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0) & ~_mask_of(modality, flux.shape)
        sigma = np.where(valid, 1.0 / np.sqrt(np.where(valid, ivar, 1.0)), np.nan)
        return Points(np.where(valid, flux, np.nan), sigma, valid,
                      np.full(len(flux), flux.shape[1]))

    def from_arrays(self, arrays: dict[str, np.ndarray], n: int, **metadata: Any) -> Modality:
        valid = arrays["valid"]
        sigma = arrays["sigma"]
        ivar = np.where(valid & (sigma > 0), 1.0 / np.where(sigma > 0, sigma, 1.0) ** 2, 0.0)
        wave = metadata.get("wavelength")
        spec = self.model.spec
        if wave is None and spec.get("wave_min") is not None:
            wave = spec["wave_min"] + spec["wave_step"] * np.arange(valid.shape[1])
        return DESISpectrum(flux=np.where(valid, arrays["value"], 0.0).astype(np.float32),
                            ivar=ivar.astype(np.float32), mask=~valid, wavelength=wave,
                            arm=self.arm)


class ZTFLightCurveCodec(SpectrumGroupCodec):
    """ZTFLightCurve (one band) <-> ``tok_lightcurve_ztf_<band>`` + its ``_norm`` key (and
    ``_time`` key with ``time_encoding: since_first``).

    Decoded times are days since the first valid point (the absolute epoch is not tokenised).
    With ``layout: ragged`` a row's tokens end at its last valid point (rows longer than the
    trained length keep their first points, with a warning).
    """

    modalities = (ZTFLightCurve,)
    kind = "ztf_mag_err"
    default_group = {"name": "ztf_g", "kind": "ztf_mag_err"}

    def _identity(self) -> dict[str, Any]:
        return {"band": self.model.spec["band"]}

    def to_points(self, modality: Modality) -> Points:
        t, mag, err = _f64(modality.time), _f64(modality.mag), _f64(modality.magerr)
        if not (t.shape == mag.shape == err.shape) or t.ndim != 2:
            raise DataError(f"ZTFLightCurve: time {t.shape}, mag {mag.shape} and magerr "
                            f"{err.shape} must be equal (n, L) arrays")
        _check_finite("ZTFLightCurve", "mag", mag)
        _check_finite("ZTFLightCurve", "magerr", err)
        absent = _mask_of(modality, t.shape)
        valid = (np.isfinite(mag) & (np.abs(mag) < MAG_SENTINEL) & np.isfinite(err) & (err > 0)
                 & ~absent & np.isfinite(t))
        prev = np.fmax.accumulate(np.where(valid, t, -np.inf), axis=1)[:, :-1]
        unsorted = valid[:, 1:] & (np.where(valid[:, 1:], t[:, 1:], np.inf) < prev)
        if unsorted.any():
            row = int(np.flatnonzero(unsorted.any(axis=1))[0])
            raise DataError(f"ZTFLightCurve: row {row}: time is not sorted")
        if self.model.ragged:  # a row ends at its last valid point
            last = valid.shape[1] - np.argmax(valid[:, ::-1], axis=1)
            lengths = np.where(valid.any(axis=1), last, 0)
        else:
            lengths = np.where(valid.any(axis=1), valid.shape[1], 0)
        return Points(np.where(valid, mag, np.nan), np.where(valid, err, np.nan), valid,
                      lengths, time=np.where(np.isfinite(t), t, 0.0))

    def from_arrays(self, arrays: dict[str, np.ndarray], n: int, **metadata: Any) -> Modality:
        valid = arrays["valid"]
        return ZTFLightCurve(time=arrays["time"], mag=arrays["value"], magerr=arrays["sigma"],
                             mask=~valid, band=self.model.spec["band"])


class GaiaXPCodec(SpectrumGroupCodec):
    """GaiaXPSpectrum (one band) <-> ragged ``tok_xp_<band>`` + its ``_norm`` key.

    Tokens are of the gaiaxpy-sampled spectrum (600 pseudo-wavelengths); decode returns the
    sampled flux and error and the least-squares coefficients on the same basis. A source
    without this band is an empty token row and decodes with ``present=False``.
    """

    modalities = (GaiaXPSpectrum,)
    kind = "gaiaxpy_xp"
    default_group = {"name": "gaiaxp_bp", "kind": "gaiaxpy_xp", "xp_band": "BP"}

    def __init__(self, group: Mapping[str, Any] | None = None, **kwargs: Any):
        super().__init__(group, **kwargs)
        if self.model.design is None:
            from .xp import design_matrix

            self.model.design = design_matrix(self.model.spec["xp_band"])

    def _identity(self) -> dict[str, Any]:
        return {"band": self.model.spec["xp_band"]}

    def accepts_metadata(self, metadata: Mapping[str, Any]) -> bool:
        return str(metadata.get("band", self.model.spec["xp_band"])).upper() == self.model.spec["xp_band"]

    def to_points(self, modality: Modality) -> Points:
        import pyarrow as pa

        from .points import read_xp

        coef = _f64(modality.coefficients)
        errs = _f64(modality.coefficient_errors)
        n = len(coef)
        present = (np.ones(n, bool) if modality.present is None
                   else np.asarray(to_numpy(modality.present), dtype=bool))
        spec = self.model.spec
        if coef.ndim != 2 or coef.shape != errs.shape or present.shape != (n,):
            raise DataError(f"GaiaXPSpectrum: coefficients {coef.shape}, coefficient_errors "
                            f"{errs.shape} and present {present.shape} do not agree")
        offsets = pa.array(np.concatenate([[0], np.cumsum(np.where(present, coef.shape[1], 0))])
                           .astype(np.int32))
        batch = pa.RecordBatch.from_arrays(
            [pa.ListArray.from_arrays(offsets, pa.array(coef[present].ravel())),
             pa.ListArray.from_arrays(offsets, pa.array(errs[present].ravel()))],
            names=[spec["coefficients_col"], spec["errors_col"]],
        )
        assert self.model.design is not None
        return read_xp(batch, spec, self.model.design, np.arange(n), "GaiaXPSpectrum")

    def _layout(self, tok: np.ndarray, present: np.ndarray, counts: np.ndarray | None) -> Any:
        counts = np.where(present, tok.shape[1], 0)
        return (np.ascontiguousarray(tok[present].ravel()),
                np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))

    def decode(self, tokens: Tokens, **metadata: Any) -> Modality:
        self.check_fitted()
        main, ntok = tokens.get(self.key), tokens.get(f"{self.key}_norm")
        if main is None or ntok is None:
            raise TokenKeyError(f"GaiaXPCodec.decode needs {self.key!r} and {self.key}_norm; "
                                f"got {sorted(tokens)}")
        flat, indptr = (np.asarray(to_numpy(v)) for v in main)
        ntok = np.asarray(to_numpy(ntok)).reshape(-1)
        n, t = len(indptr) - 1, self.model.n_tokens
        counts = np.diff(indptr)
        bad = np.flatnonzero((counts != 0) & (counts != t))
        if bad.size:
            raise DataError(f"GaiaXPCodec.decode: row {int(bad[0])} has {int(counts[bad[0]])} "
                            f"tokens, expected 0 or {t}")
        present = counts == t
        rect = np.full((n, t), self.model.codebook_size, dtype=np.int64)
        rect[present] = flat.reshape(-1, t)
        ntok = np.where(present, ntok, self.model.norm_bins)
        return self.from_arrays(self.model.decode_tokens({"": rect, "_norm": ntok}), n,
                                present=present)

    def from_arrays(self, arrays: dict[str, np.ndarray], n: int, **metadata: Any) -> Modality:
        from .xp import PSEUDO_WAVELENGTH, coefficients_from_flux

        present = np.asarray(metadata.get("present", arrays["valid"].any(axis=1)), dtype=bool)
        design = self.model.design
        assert design is not None
        flux = np.where(arrays["valid"], arrays["value"], 0.0)
        coef = np.full((n, design.shape[0]), np.nan)
        err = np.full((n, design.shape[0]), np.nan)
        if present.any():
            coef[present] = coefficients_from_flux(flux[present], design)
            # diagonal model: sigma^2 = (errors^2) @ D^2, solved for errors^2
            sig2 = np.where(arrays["valid"], arrays["sigma"], 0.0)[present] ** 2
            err[present] = np.sqrt(np.clip(coefficients_from_flux(sig2, design**2), 0.0, None))
        return GaiaXPSpectrum(coefficients=coef, coefficient_errors=err,
                              standard_deviation=np.where(present, 1.0, np.nan), present=present,
                              band=self.model.spec["xp_band"], flux=arrays["value"],
                              flux_error=arrays["sigma"], pseudo_wavelength=PSEUDO_WAVELENGTH)


def codec_for_model(model: GroupModel) -> SpectrumGroupCodec:
    """A fitted codec around one fitted group of a tokenizer."""
    cls = {"flux_ivar": DESISpectrumCodec, "ztf_mag_err": ZTFLightCurveCodec,
           "gaiaxpy_xp": GaiaXPCodec}[model.kind]
    return cls(model=model)


__all__ = ["DESISpectrumCodec", "GaiaXPCodec", "SpectrumGroupCodec", "ZTFLightCurveCodec",
           "codec_for_model"]
