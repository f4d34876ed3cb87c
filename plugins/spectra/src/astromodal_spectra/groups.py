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

_COMMON = {"name", "kind", "token_key", "patch_size", "length"}
_KEYS = {
    "flux_ivar": _COMMON | {"flux_col", "ivar_col", "mask_col", "wave_min", "wave_step"},
    "ztf_mag_err": _COMMON | {"mag_col", "err_col", "time_col", "band"},
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


def normalise_group(group: Mapping[str, Any]) -> dict[str, Any]:
    """A complete group dict: defaults filled in, unknown keys and bad values rejected."""
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
    elif kind == "ztf_mag_err":
        spec.setdefault("band", suffix)
        spec.setdefault("mag_col", f"ztf_mag_{spec['band']}")
        spec.setdefault("err_col", f"ztf_magerr_{spec['band']}")
        spec.setdefault("time_col", f"ztf_hmjd_{spec['band']}")
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
