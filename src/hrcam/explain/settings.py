"""What an ``hrcam explain`` run writes (:class:`OutputSettings`) and how it goes through its
images (:class:`RunSettings`); what it computes is the explainer's. No torch here: the command's
``--help`` reads the choices."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IMAGE_FORMATS", "MAPS_DTYPES", "OutputSettings", "RunSettings"]

#: hrcam.viz.DEFAULT_CMAP (a test keeps them equal; viz itself needs Numba).
DEFAULT_CMAP = "inferno"

IMAGE_FORMATS = ("jpeg", "png")
MAPS_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class OutputSettings:
    """How each image's files are written."""

    pipeline_figure: bool = True
    image_format: str = "jpeg"
    jpeg_quality: int = 88
    # The pipeline figure is read for its panels' shapes, not fine texture: at 75 it takes 68 KB
    # instead of 92, which keeps an image's outputs under 400 KB with every map in them.
    figure_quality: int = 75
    maps_dtype: str = "float16"
    cmap: str = DEFAULT_CMAP
    opacity: float = 0.5
    # The blended overlays as files too (the report blends the coloured CAMs over the image
    # itself): three more pictures per image at display size (docs/speed.md).
    overlay_files: bool = False

    def __post_init__(self) -> None:
        if self.image_format not in IMAGE_FORMATS:
            raise ValueError(
                f"image format must be one of {IMAGE_FORMATS}, got {self.image_format!r}"
            )
        if self.maps_dtype not in MAPS_DTYPES:
            raise ValueError(f"maps dtype must be one of {MAPS_DTYPES}, got {self.maps_dtype!r}")
        for name in ("jpeg_quality", "figure_quality"):
            quality = getattr(self, name)
            if not (isinstance(quality, int) and 1 <= quality <= 100):
                raise ValueError(f"{name} must be an integer in [1, 100], got {quality!r}")
        if not 0 <= self.opacity <= 1:
            raise ValueError(f"opacity must lie in [0, 1], got {self.opacity}")
        from ..viz import colour_table

        colour_table(self.cmap)  # an unknown colour map fails now, not per image

    @property
    def suffix(self) -> str:
        return ".jpg" if self.image_format == "jpeg" else ".png"


@dataclass(frozen=True)
class RunSettings:
    """How a run goes through its images (what it computes is the explainer's, what it writes
    :class:`OutputSettings`').

    Attributes:
        batch_size: images per :meth:`Explainer.explain` call.
        skip_existing: keep images whose ``predictions.json`` already exists (resume a run).
        shard: ``(index, count)``: only every ``count``-th image from ``index`` (several
            processes over one large folder; see :func:`merge_shards`).
        show_progress: a progress bar (rate, ETA).
        writers: threads that write finished images while the next batch is computed.
        report_every: the least seconds between rewrites of ``index.html`` and
            ``summary.json`` (written when the run starts, then after a batch).
        force: write into a folder that holds other files (never overwriting them).
    """

    batch_size: int = 8
    skip_existing: bool = False
    shard: tuple[int, int] = (0, 1)
    show_progress: bool = True
    writers: int = 2
    report_every: float = 1.0
    force: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
