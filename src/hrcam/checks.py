"""Input checks at the public boundary: say what was expected, what was received, how to fix it.

One exception type per kind of error, each a ``ValueError`` (so callers that catch
``ValueError`` keep working): :class:`ShapeError`, :class:`NonFiniteError`,
:class:`RangeError`. Inside the library, code trusts its own invariants and does not re-check.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NonFiniteError", "RangeError", "ShapeError", "check_finite", "check_range"]


class ShapeError(ValueError):
    """An array has the wrong number of dimensions, sizes or channels."""


class NonFiniteError(ValueError):
    """An array holds NaN or infinite values where they have no meaning."""


class RangeError(ValueError):
    """Values lie outside the range they must lie in (e.g. an image that is not in [0, 1])."""


def count_non_finite(array) -> int:
    """How many NaN or ±inf values an array or tensor holds."""
    if hasattr(array, "detach"):
        import torch

        return int((~torch.isfinite(array.detach())).sum()) if array.is_floating_point() else 0
    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.floating) or a.size == 0:
        return 0
    if np.isfinite(a.min()) and np.isfinite(a.max()):  # NaN propagates through min and max
        return 0
    return int(np.count_nonzero(~np.isfinite(a)))


def check_finite(array, name: str, *, hint: str = "") -> None:
    """Raise :class:`NonFiniteError` naming ``name`` and the count when ``array`` has NaN/inf."""
    bad = count_non_finite(array)
    if bad:
        size = array.numel() if hasattr(array, "numel") else np.asarray(array).size
        extra = f"; {hint}" if hint else ""
        raise NonFiniteError(
            f"{name} holds {bad} non-finite value(s) (NaN or ±inf) of {size}{extra}"
        )


def check_range(array, name: str, low: float, high: float, *, hint: str = "", slack=1e-3) -> None:
    """Raise :class:`RangeError` unless every value of ``array`` lies in ``[low, high]``."""
    if hasattr(array, "detach"):
        lo, hi = float(array.amin()), float(array.amax())
    else:
        a = np.asarray(array)
        lo, hi = float(a.min()), float(a.max())
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < low - slack or hi > high + slack:
        extra = f"; {hint}" if hint else ""
        raise RangeError(
            f"{name} must lie in [{low:g}, {high:g}], got values from {lo:.3g} to {hi:.3g}{extra}"
        )
