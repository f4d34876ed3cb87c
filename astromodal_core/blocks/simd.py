"""The AVX2 kernel of float32 quantile tokens: eight values per step with hardware gathers.

numba's LLVM does not vectorize a loop whose loads are indexed by the data (a table lookup)
on CPUs it does not tune for fast gathers, which includes the AMD EPYC machines this project
runs on, so the scalar kernel of :mod:`astromodal_core.blocks.quantile` spends about six
cycles a value. :func:`encode_f32` does the same work eight lanes at a time through one small
numba intrinsic that emits LLVM's AVX2 gather intrinsics, about 1.4x faster (see
``benchmarks/results_splus.md``).

Its tables are a float32 twin of a :class:`~astromodal_core.blocks.quantile.Lookup`
(:class:`Float32Cells`): every edge rounded up to the nearest float32 at or above it (a
float32 ``x`` is at or above an edge exactly when it is at or above the rounded edge, so the
tokens are those of the float64 edges), equal-width cells computed in float32 as the kernel
computes them, and per cell the first token and the one edge that may lie in it. The token
of ``x`` in cell ``c`` is ``base[c] + (edge[c] <= x)``; NaN, +-inf and up to two sentinels
are the mask token, selected without a branch.

:data:`AVAILABLE` says whether this kernel can run here: numba importable and compiling (not
``NUMBA_DISABLE_JIT``), the host CPU has AVX2, numba compiles for it (``NUMBA_CPU_NAME``
unset, ``NUMBA_CPU_FEATURES`` unset or with ``+avx2``), and ``ASTROMODAL_NO_SIMD`` is not
set. It takes contiguous float32 values into uint16 tokens (the columns of an Arrow record
batch, a column-major array); anything else goes to the scalar kernel.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import attrs
import numpy as np

__all__ = ["AVAILABLE", "Float32Cells", "encode_f32", "float32_cells"]

_CELLS_PER_EDGE = (4, 8, 16, 32, 64)
_MAX_CELLS = 1 << 16


def _available() -> bool:
    if os.environ.get("ASTROMODAL_NO_SIMD", "") or os.environ.get("ASTROMODAL_NO_NUMBA", ""):
        return False
    try:
        import llvmlite.binding as ll
        import numba
    except ImportError:  # pragma: no cover - numba is an optional dependency
        return False
    if numba.config.DISABLE_JIT:  # an intrinsic cannot run as Python
        return False
    if (numba.config.CPU_NAME or "host") != "host":  # compiling for another CPU: maybe no AVX2
        return False
    if numba.config.CPU_FEATURES and "+avx2" not in numba.config.CPU_FEATURES:
        return False
    try:
        return bool(ll.get_host_cpu_features().get("avx2", False))
    except RuntimeError:  # pragma: no cover - features unknown on this platform
        return False


AVAILABLE = _available()


@attrs.frozen(eq=False)
class Float32Cells:
    """The float32 tables of :func:`encode_f32`: ``base`` int32 and ``edge`` float32 per cell,
    the cell of ``x`` being ``min(max((x - lo) * scale, 0), n_cells - 1)`` in float32."""

    base: np.ndarray
    edge: np.ndarray
    lo: np.float32
    scale: np.float32
    n_cells: int

    @property
    def flast(self) -> np.float32:
        """The last cell's index as float32 (the clamp of the cell computation)."""
        return np.float32(self.n_cells - 1)


def float32_cells(edges: np.ndarray) -> Float32Cells | None:
    """The float32 tables of increasing float64 ``edges``: the fewest cells (from 4 per edge,
    doubling to 64 or 65,536) in which no cell holds two edges; None when rounding up to
    float32 merges two edges, an edge rounds up to +inf or to a subnormal float32 (read as 0
    where a library has set the CPU's denormals-are-zero flag), or no such grid exists."""
    edges = np.asarray(edges, dtype=np.float64)
    if len(edges) < 2 or len(edges) >= np.iinfo(np.int32).max:
        return None
    with np.errstate(over="ignore"):
        up = edges.astype(np.float32)
    below = up.astype(np.float64) < edges
    up[below] = np.nextafter(up[below], np.float32(np.inf))
    if not np.all(np.isfinite(up)) or np.any(np.diff(up) <= 0):
        return None
    if np.any((up != 0) & (np.abs(up) < np.finfo(np.float32).tiny)):  # subnormal: read as 0 under DAZ
        return None
    lo = up[0]
    padded = np.concatenate([up, np.array([np.inf], dtype=np.float32)])
    for per_edge in _CELLS_PER_EDGE:
        n_cells = int(min(_MAX_CELLS, per_edge * (len(up) + 1)))
        with np.errstate(over="ignore"):
            scale = np.float32(n_cells / (float(up[-1]) - float(lo)))
        if not (np.isfinite(scale) and scale > 0):
            return None
        with np.errstate(over="ignore"):
            w = (up - lo) * scale
        cells = np.minimum(np.maximum(w, np.float32(0)), np.float32(n_cells - 1)).astype(np.int64)
        base = np.searchsorted(cells, np.arange(n_cells), side="left")
        if np.all(np.diff(np.append(base, len(up))) <= 1):
            return Float32Cells(base=base.astype(np.int32), edge=padded[base], lo=lo, scale=scale,
                                n_cells=n_cells)
        if n_cells == _MAX_CELLS:
            break
    return None


if AVAILABLE:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    from ..jit import njit

    _F32, _I32, _I16, _I8, _I64 = ir.FloatType(), ir.IntType(32), ir.IntType(16), ir.IntType(8), ir.IntType(64)
    _V8F, _V8I = ir.VectorType(_F32, 8), ir.VectorType(_I32, 8)

    def _splat(builder: Any, value: Any, vty: Any) -> Any:
        undef = ir.Constant(vty, ir.Undefined)
        one = builder.insert_element(undef, value, ir.Constant(_I32, 0))
        return builder.shuffle_vector(one, undef, ir.Constant(_V8I, [0] * 8))

    def _declare(builder: Any, name: str, ret: Any, args: list[Any]) -> Any:
        return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)

    @intrinsic
    def _step8(typingctx, x, i, base, edge, lo, scale, flast, s0, s1, mask, out):  # pragma: no cover
        """Tokens of ``x[i:i+8]`` into uint16 ``out[i:i+8]`` (any stride); returns the mask tokens."""
        sig = types.int64(x, i, base, edge, lo, scale, flast, s0, s1, mask, out)

        def codegen(context, builder, signature, args):
            x_, i_, base_, edge_, lo_, scale_, flast_, s0_, s1_, mask_, out_ = args
            xa = context.make_array(signature.args[0])(context, builder, x_)
            ba = context.make_array(signature.args[2])(context, builder, base_)
            ea = context.make_array(signature.args[3])(context, builder, edge_)
            oa = context.make_array(signature.args[10])(context, builder, out_)
            xv = builder.load(builder.bitcast(builder.gep(xa.data, [i_]), _V8F.as_pointer()), align=4)
            zero = ir.Constant(_V8F, [0.0] * 8)
            w = builder.fmul(builder.fsub(xv, _splat(builder, lo_, _V8F)), _splat(builder, scale_, _V8F))
            w = builder.select(builder.fcmp_ordered(">", w, zero), w, zero)  # NaN -> 0
            flast8 = _splat(builder, flast_, _V8F)
            cell = builder.fptosi(builder.select(builder.fcmp_ordered("<", w, flast8), w, flast8), _V8I)
            gather_d = _declare(builder, "llvm.x86.avx2.gather.d.d.256", _V8I,
                                [_V8I, cgutils.voidptr_t, _V8I, _V8I, _I8])
            gather_ps = _declare(builder, "llvm.x86.avx2.gather.d.ps.256", _V8F,
                                 [_V8F, cgutils.voidptr_t, _V8I, _V8F, _I8])
            every = ir.Constant(_V8I, [-1] * 8)
            first = builder.call(gather_d, [ir.Constant(_V8I, [0] * 8), builder.bitcast(ba.data, cgutils.voidptr_t),
                                            cell, every, ir.Constant(_I8, 4)])
            bound = builder.call(gather_ps, [zero, builder.bitcast(ea.data, cgutils.voidptr_t), cell,
                                             builder.bitcast(every, _V8F), ir.Constant(_I8, 4)])
            token = builder.add(first, builder.zext(builder.fcmp_ordered("<=", bound, xv), _V8I))
            fabs = _declare(builder, "llvm.fabs.v8f32", _V8F, [_V8F])
            inf = ir.Constant(_V8F, [float("inf")] * 8)
            bad = builder.not_(builder.fcmp_ordered("<", builder.call(fabs, [xv]), inf))
            bad = builder.or_(bad, builder.fcmp_ordered("==", xv, _splat(builder, s0_, _V8F)))
            bad = builder.or_(bad, builder.fcmp_ordered("==", xv, _splat(builder, s1_, _V8F)))
            token = builder.trunc(builder.select(bad, _splat(builder, mask_, _V8I), token), ir.VectorType(_I16, 8))
            stride = builder.extract_value(oa.strides, 0)
            start = builder.gep(builder.bitcast(oa.data, _I8.as_pointer()), [builder.mul(i_, stride)])
            with builder.if_else(builder.icmp_signed("==", stride, ir.Constant(_I64, 2))) as (dense, strided):
                with dense:
                    builder.store(token, builder.bitcast(start, ir.VectorType(_I16, 8).as_pointer()), align=2)
                with strided:
                    for k in range(8):
                        at = builder.gep(start, [builder.mul(ir.Constant(_I64, k), stride)])
                        builder.store(builder.extract_element(token, ir.Constant(_I32, k)),
                                      builder.bitcast(at, _I16.as_pointer()))
            ctpop = _declare(builder, "llvm.ctpop.i8", _I8, [_I8])
            return builder.zext(builder.call(ctpop, [builder.bitcast(bad, _I8)]), _I64)

        return sig, codegen

    @njit(cache=True, nogil=True)
    def _encode_f32(x, valid, voff, base, edge, lo, scale, flast, s0, s1, mask_token, out):  # pragma: no cover
        n = x.shape[0]
        mask = np.int64(mask_token)
        missing = 0
        i = 0
        while i + 8 <= n:
            missing += _step8(x, i, base, edge, lo, scale, flast, s0, s1, np.int32(mask_token), out)
            i += 8
        zero = scale - scale
        inf = np.float32(np.inf)
        while i < n:  # the last values, one at a time (the same arithmetic)
            v = x[i]
            w = (v - lo) * scale
            w = w if w > zero else zero
            w = w if w < flast else flast
            c = np.int64(w)
            t = np.int64(base[c]) + np.int64(edge[c] <= v)
            k = np.int64((not (abs(v) < inf)) | (v == s0) | (v == s1))
            missing += k
            out[i] = np.uint16(t + k * (mask - t))
            i += 1
        if valid.shape[0] > 0:  # nulls in the Arrow bitmap are the mask token too
            for i in range(n):
                j = i + voff
                if ((valid[j >> 3] >> (j & 7)) & 1) == 0 and out[i] != mask:
                    out[i] = np.uint16(mask)
                    missing += 1
        return missing



def encode_f32(x: np.ndarray, valid: np.ndarray, voff: int, cells: Float32Cells, sentinels: np.ndarray,
               mask_token: int, out: np.ndarray) -> int | None:
    """Tokens of float32 ``x`` into uint16 ``out`` (any stride) with :class:`Float32Cells`,
    ``valid`` an Arrow validity bitmap (empty: no nulls) whose bit ``voff + i`` is row ``i``;
    the count of mask tokens written, or None (nothing written) when this kernel does not
    apply: not :data:`AVAILABLE`, ``x`` not contiguous float32, ``out`` not uint16 of ``x``'s
    length, or more than two sentinels."""
    if (not AVAILABLE or x.dtype != np.float32 or not x.flags.c_contiguous
            or out.dtype != np.uint16 or out.shape != x.shape):
        return None
    pair = _sentinel_pair(tuple(np.asarray(sentinels, dtype=np.float64).reshape(-1).tolist()))
    if pair is None:
        return None
    return int(_encode_f32(x, valid, voff, cells.base, cells.edge, cells.lo, cells.scale, cells.flast,
                           pair[0], pair[1], mask_token, out))


@functools.lru_cache(maxsize=256)
def _sentinel_pair(sentinels: tuple[float, ...]) -> tuple[np.float32, np.float32] | None:
    """The kernel's two sentinels as float32 (NaN where absent, and for a value no float32
    holds: no float32 equals it), or None for more than two."""
    kept = [s for s in sentinels if not np.isnan(s)]
    if len(kept) > 2:
        return None
    with np.errstate(over="ignore"):
        pair = [np.float32(s) if float(np.float32(s)) == s else np.float32(np.nan) for s in kept]
    pair += [np.float32(np.nan)] * (2 - len(pair))
    return pair[0], pair[1]
