"""The one-image refinement hrcam runs: :mod:`.compiled` (the steps as Numba loops), or
:mod:`.reference` (NumPy) where Numba is missing. Both give the same results bit for bit
(``tests/postprocess/``), so callers need not know which one they got.

    >>> from hrcam.postprocess.backend import one_image
    >>> one_image.__name__ in ("hrcam.postprocess.compiled", "hrcam.postprocess.reference")
    True
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["one_image"]


def _load() -> ModuleType:
    try:  # Numba is a dependency; a platform without its wheel falls back to NumPy
        from . import compiled

        return compiled
    except ImportError:  # pragma: no cover
        from . import reference

        return reference


one_image: ModuleType = _load()
