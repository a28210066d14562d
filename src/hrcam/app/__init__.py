"""``hrcam app``: a local web page to explore one model's explanations (the ``app`` extra).

- :mod:`.session` — what the page computes (images, top-5, CAMs cached per image and class,
  refinement, overlays, downloads), with no web framework: testable and benchmarked alone;
- :mod:`.page` — the Gradio page over a session, and :func:`launch`, which serves it on
  127.0.0.1 unless told otherwise.
"""

from .session import AppError, ExplainerSession

__all__ = ["AppError", "ExplainerSession", "build_page", "launch"]


def __getattr__(name: str):
    if name in ("build_page", "launch"):  # Gradio is imported only when the page is wanted
        from . import page

        return getattr(page, name)
    raise AttributeError(f"module 'hrcam.app' has no attribute {name!r}")
