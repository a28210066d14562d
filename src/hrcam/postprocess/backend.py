"""The one-image refinement hrcam runs: :mod:`.compiled` (the steps as Numba loops), or
:mod:`.reference` (NumPy) where Numba is missing. Both give the same results bit for bit
(``tests/postprocess/``), so callers need not know which one they got. :func:`refine` sends a
volume's maps (rank 3) to :mod:`.volume` instead.

    >>> from hrcam.postprocess.backend import one_image
    >>> one_image.__name__ in ("hrcam.postprocess.compiled", "hrcam.postprocess.reference")
    True
"""

from __future__ import annotations

from types import ModuleType

__all__ = ["one_image", "refine"]


def _load() -> ModuleType:
    try:  # Numba is a dependency; a platform without its wheel falls back to NumPy
        from . import compiled

        return compiled
    except ImportError:  # pragma: no cover
        from . import reference

        return reference


one_image: ModuleType = _load()


def refine(low, high, image=None, **kwargs):
    """The refinement of one image's maps (``(h, w)`` and ``(H, W)``: :attr:`one_image`'s
    ``refine``) or one volume's (``(d, h, w)`` and ``(D, H, W)``:
    :func:`.volume.refine_volume`), with the same options and result (:class:`RefineSteps`);
    see :func:`hrcam.postprocess.reference.refine`."""
    if getattr(high, "ndim", 2) == 3 or getattr(low, "ndim", 2) == 3:
        from .volume import refine_volume

        return refine_volume(low, high, image, **kwargs)
    return one_image.refine(low, high, image, **kwargs)
