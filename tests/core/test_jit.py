"""numba kernels load where no cache directory is writable (a shared cluster install)."""

from __future__ import annotations

import pytest

numba = pytest.importorskip("numba")


def test_njit_falls_back_to_no_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from astromodal_core import jit

    calls = []
    real = numba.njit

    def picky(*args, **options):  # numba's own error when no cache locator is writable
        if args:  # numba's internals call njit(func) themselves
            return real(*args, **options)
        calls.append(options.get("cache"))
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'x.py'")
        return real(**options)

    monkeypatch.setattr(numba, "njit", picky)

    @jit.njit(cache=True)
    def f(x):
        return x + 1

    assert f(1) == 2 and calls == [True, False]


def test_other_numba_errors_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    from astromodal_core import jit

    real = numba.njit

    def broken(*args, **options):
        if args:
            return real(*args, **options)
        raise RuntimeError("some other failure")

    monkeypatch.setattr(numba, "njit", broken)
    with pytest.raises(RuntimeError, match="some other failure"):
        jit.njit(cache=True)(lambda x: x)
