"""Group specifications: which columns a group reads, its kind, token keys and defaults."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

KINDS = ("flux_ivar", "ztf_mag_err", "gaiaxpy_xp")
DESI_ARMS = ("b", "r", "z")
ZTF_BANDS = ("g", "r", "i")
XP_BANDS = ("BP", "RP")
#: DESI coadd wavelength grids (Angstrom): start, step, pixels.
DESI_GRIDS = {"b": (3600.0, 0.8, 2751), "r": (5760.0, 0.8, 2326), "z": (7520.0, 0.8, 2881)}
XP_N_COEFFICIENTS = 55
XP_N_SAMPLES = 600

#: ZTF light curves: token layout and time encoding of new groups (a saved group without these
#: keys is the earlier ``padded`` / ``delta`` form, which is also stored without them)
ZTF_LAYOUTS = ("ragged", "padded")
TIME_ENCODINGS = ("since_first", "delta")
DEFAULT_TIME_STEP = 0.5
#: DESI spectra: ``pixels`` (the earlier per-point vectors, stored without the key) or
#: ``level_shape`` (per patch: a level token and a shape token)
FLUX_ENCODINGS = ("pixels", "level_shape")
DEFAULT_SHAPE_PATCH = 32

_COMMON = {"name", "kind", "token_key", "patch_size", "length"}
_KEYS = {
    "flux_ivar": _COMMON | {"flux_col", "ivar_col", "mask_col", "wave_min", "wave_step",
                            "encoding"},
    "ztf_mag_err": _COMMON | {"mag_col", "err_col", "time_col", "band", "layout",
                              "time_encoding", "time_step", "time_span"},
    "gaiaxpy_xp": _COMMON
    | {"xp_band", "coefficients_col", "errors_col", "correlations_col", "n_coefficients"},
}


def _default_token_key(spec: Mapping[str, Any]) -> str:
    name = str(spec["name"]).lower()
    if spec["kind"] == "flux_ivar":
        return f"tok_spectrum_{name}"
    if spec["kind"] == "ztf_mag_err":
        return f"tok_lightcurve_{name}"
    return f"tok_xp_{str(spec['xp_band']).lower()}"


def _choice(spec: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = spec[key]
    if value not in allowed:
        raise ValueError(f"group {spec['name']!r}: {key} must be one of {allowed}, got {value!r}")
    return str(value)


def _positive_float(spec: Mapping[str, Any], key: str) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = float("nan")
    if isinstance(value, bool) or not out > 0 or out == float("inf"):
        raise ValueError(f"group {spec['name']!r}: {key} must be a positive number of days, "
                         f"got {value!r}")
    return out


def _ztf_encoding(spec: dict[str, Any], saved: bool) -> None:
    """Fill (or, for the earlier padded / delta form, drop) a ZTF group's encoding keys."""
    legacy = saved and "layout" not in spec and "time_encoding" not in spec
    spec.setdefault("layout", "padded" if legacy else "ragged")
    spec.setdefault("time_encoding", "delta" if legacy else "since_first")
    _choice(spec, "layout", ZTF_LAYOUTS)
    _choice(spec, "time_encoding", TIME_ENCODINGS)
    if spec["time_encoding"] == "since_first":
        spec["time_step"] = _positive_float({**spec, "time_step": spec.get("time_step", DEFAULT_TIME_STEP)},
                                            "time_step")
        spec["time_span"] = _positive_float({**spec, "time_span": spec.get("time_span")}, "time_span")
    else:
        for key in ("time_step", "time_span"):
            if spec.get(key) is not None:
                raise ValueError(f"group {spec['name']!r}: {key} needs time_encoding 'since_first'")
            spec.pop(key, None)
    if spec["layout"] == "padded" and spec["time_encoding"] == "delta":
        del spec["layout"], spec["time_encoding"]  # the earlier form, stored as before


def explicit_group(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A normalised group as a user would write it: a ZTF group of the earlier form (stored
    without ``layout`` / ``time_encoding``) says so, since a new group defaults to the other."""
    out = dict(spec)
    if out["kind"] == "ztf_mag_err" and "layout" not in out and "time_encoding" not in out:
        out["layout"], out["time_encoding"] = "padded", "delta"
    return out


def normalise_group(group: Mapping[str, Any], *, saved: bool = False) -> dict[str, Any]:
    """A complete group dict: defaults filled in, unknown keys and bad values rejected.

    ``saved=True`` reads a group from a saved tokenizer: a ZTF group without ``layout`` /
    ``time_encoding`` is then the earlier padded, delta-time form (the default of a new group
    is ragged rows and times since the first epoch)."""
    if not isinstance(group, Mapping):
        raise TypeError(f"a group must be a dict, got {type(group).__name__}")
    for req in ("name", "kind"):
        if req not in group:
            raise ValueError(f"group {dict(group)!r} has no {req!r}")
    kind = group["kind"]
    if kind not in KINDS:
        raise ValueError(f"group {group['name']!r}: unknown kind {kind!r}; use one of {KINDS}")
    unknown = set(group) - _KEYS[kind]
    if unknown:
        raise ValueError(
            f"group {group['name']!r}: unknown key(s) {sorted(unknown)} for kind {kind!r}; "
            f"allowed: {sorted(_KEYS[kind])}"
        )
    spec: dict[str, Any] = dict(group)
    name = str(spec["name"])
    suffix = name.rsplit("_", 1)[-1]
    if kind == "flux_ivar":
        spec.setdefault("flux_col", f"desi_flux_{suffix}")
        spec.setdefault("ivar_col", f"desi_ivar_{suffix}")
        spec.setdefault("mask_col", "auto")
        grid = DESI_GRIDS.get(suffix) if name.startswith("desi_") else None
        spec.setdefault("wave_min", grid[0] if grid else None)
        spec.setdefault("wave_step", grid[1] if grid else None)
        if spec.get("encoding", "pixels") == "pixels":
            spec.pop("encoding", None)  # the earlier form, stored as before
        else:
            _choice(spec, "encoding", FLUX_ENCODINGS)
            spec.setdefault("patch_size", DEFAULT_SHAPE_PATCH)
    elif kind == "ztf_mag_err":
        spec.setdefault("band", suffix)
        spec.setdefault("mag_col", f"ztf_mag_{spec['band']}")
        spec.setdefault("err_col", f"ztf_magerr_{spec['band']}")
        spec.setdefault("time_col", f"ztf_hmjd_{spec['band']}")
        _ztf_encoding(spec, saved)
    else:
        band = str(spec.get("xp_band", suffix)).upper()
        if band not in XP_BANDS:
            raise ValueError(f"group {name!r}: xp_band must be 'BP' or 'RP', got {band!r}")
        spec["xp_band"] = band
        p = band.lower()
        spec.setdefault("coefficients_col", f"{p}_coefficients")
        spec.setdefault("errors_col", f"{p}_coefficient_errors")
        spec.setdefault("correlations_col", "auto")
        spec.setdefault("n_coefficients", XP_N_COEFFICIENTS)
    spec.setdefault("token_key", _default_token_key(spec))
    spec.setdefault("patch_size", 1)
    spec.setdefault("length", None)
    if int(spec["patch_size"]) < 1:
        raise ValueError(f"group {name!r}: patch_size must be >= 1, got {spec['patch_size']}")
    spec["patch_size"] = int(spec["patch_size"])
    if spec.get("encoding") == "level_shape" and spec["patch_size"] < 2:
        raise ValueError(f"group {name!r}: encoding 'level_shape' needs patch_size >= 2")
    return spec


def check_unique(specs: Iterable[Mapping[str, Any]]) -> None:
    """Raise ValueError when two groups share a name or a token key."""
    seen: dict[str, str] = {}
    for s in specs:
        for what in (s["name"], s["token_key"]):
            if what in seen:
                raise ValueError(f"two groups use {what!r}")
            seen[what] = s["name"]


def detect_groups(columns: Iterable[str], *, ztf_only: bool = False) -> list[dict[str, Any]]:
    """Default groups whose columns exist: desi_<arm>, ztf_<band>, gaiaxp_bp / gaiaxp_rp."""
    cols = set(columns)
    found: list[dict[str, Any]] = []
    if not ztf_only:
        for arm in DESI_ARMS:
            if {f"desi_flux_{arm}", f"desi_ivar_{arm}"} <= cols:
                found.append({"name": f"desi_{arm}", "kind": "flux_ivar"})
    for band in ZTF_BANDS:
        if {f"ztf_mag_{band}", f"ztf_magerr_{band}", f"ztf_hmjd_{band}"} <= cols:
            found.append({"name": f"ztf_{band}", "kind": "ztf_mag_err"})
    if not ztf_only:
        for band in XP_BANDS:
            if {f"{band.lower()}_coefficients", f"{band.lower()}_coefficient_errors"} <= cols:
                found.append({"name": f"gaiaxp_{band.lower()}", "kind": "gaiaxpy_xp", "xp_band": band})
    return [normalise_group(g) for g in found]


def columns_of(spec: Mapping[str, Any]) -> list[str]:
    """The parquet columns a group reads (the optional mask column excluded)."""
    if spec["kind"] == "flux_ivar":
        return [spec["flux_col"], spec["ivar_col"]]
    if spec["kind"] == "ztf_mag_err":
        return [spec["mag_col"], spec["err_col"], spec["time_col"]]
    return [spec["coefficients_col"], spec["errors_col"]]


def mask_column(spec: Mapping[str, Any], available: Iterable[str]) -> str | None:
    """The optional column a group reads if present: a flux_ivar group's mask
    (``auto``: ``desi_mask_<arm>``) or an XP group's coefficient correlations
    (``auto``: ``<bp|rp>_coefficient_correlations``)."""
    if spec["kind"] == "flux_ivar":
        m, guess = spec.get("mask_col"), str(spec["flux_col"]).replace("flux", "mask")
    elif spec["kind"] == "gaiaxpy_xp":
        m, guess = spec.get("correlations_col"), f"{spec['xp_band'].lower()}_coefficient_correlations"
    else:
        return None
    if m == "auto":
        return guess if guess in set(available) else None
    return m
