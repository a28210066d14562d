"""Pictures: CAM overlays, colour maps, PNG files, and the step-by-step pipeline figure.

Everything draws off-screen with matplotlib's object-oriented API (a ``Figure`` on an Agg
canvas, never ``pyplot``), so importing this module changes no global backend and works
without a display. Files are written atomically (:func:`hrcam.utils.atomic_write`).

Example::

    from hrcam import viz
    from hrcam.postprocess import refine

    steps = refine(low_res_cam, high_res_cam, image)
    viz.plot_pipeline(steps, image, path="pipeline.png")
    viz.save_png(viz.overlay_cam(image, steps.refined), "refined.png")
"""

from __future__ import annotations

import io
import os

import numpy as np

from .arrays import normalize_map, to_numpy
from .postprocess.reference import mask_image, resize_bilinear
from .postprocess.steps import RefineSteps
from .utils import atomic_write

__all__ = ["colorize", "overlay_cam", "plot_pipeline", "save_png", "to_uint8_image"]


def to_uint8_image(array) -> np.ndarray:
    """An image as uint8 for display or PNG: ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``.

    uint8 passes through; bool becomes 0/255; other integers are clipped to [0, 255]; floats
    are taken as [0, 1] when their maximum is at most 1, else as [0, 255], and clipped
    (non-finite values become 0). Tensors are accepted.
    """
    a = to_numpy(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(
            f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {a.shape}; "
            "convert channels-first tensors with .permute(1, 2, 0)"
        )
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, 0, 255).astype(np.uint8)
    a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    scale = 255.0 if a.size == 0 or a.max() <= 1.0 else 1.0
    return np.clip(np.rint(a * scale), 0, 255).astype(np.uint8)


def colorize(cam, *, cmap: str = "jet") -> np.ndarray:
    """A CAM ``(H, W)`` (normalised to [0, 1] here) as a uint8 RGB picture ``(H, W, 3)``."""
    from matplotlib import colormaps

    c = to_numpy(cam)
    if c.ndim != 2:
        raise ValueError(f"cam must be one (H, W) map, got shape {c.shape}")
    try:
        colormap = colormaps[cmap]
    except KeyError:
        raise ValueError(
            f"unknown matplotlib colour map {cmap!r}; try 'jet' or 'viridis'"
        ) from None
    rgba = colormap(normalize_map(c), bytes=True)
    return np.ascontiguousarray(rgba[..., :3])


def overlay_cam(image, cam, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """``image`` with ``cam`` in colour on top: ``(1 - alpha) * image + alpha * colour``.

    ``image``: ``(H, W)`` or ``(H, W, 3)`` (see :func:`to_uint8_image`); ``cam``: ``(h, w)``,
    resized bilinearly to ``H x W``. Returns ``(H, W, 3)`` uint8.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = to_uint8_image(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3]
    c = to_numpy(cam)
    if c.ndim != 2:
        raise ValueError(f"cam must be one (h, w) map, got shape {c.shape}")
    colour = colorize(resize_bilinear(normalize_map(c), img.shape[:2]), cmap=cmap)
    blended = (1 - alpha) * img.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def save_png(array, path: str | os.PathLike) -> None:
    """Write an image (see :func:`to_uint8_image` for the accepted forms) as a PNG, atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(to_uint8_image(array)).save(buffer, format="PNG")
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())


def plot_pipeline(
    steps: RefineSteps,
    image=None,
    *,
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Draw every step of the refinement pipeline, as the paper's figures do.

    Ten panels: the image, the low-res CAM, the ROI with the focal points, the blurred
    high-res CAM, its edges, the histogram of edges in the ROI with the growing bounds, the
    grown segment, the filled segment, the refined CAM and the masked image. ``steps``: one
    image's :class:`RefineSteps` (use ``steps.select(i)`` for a batch); ``image``: that image
    (``(H', W'[, 3])``), or ``None`` to leave its panels empty. Saves a PNG atomically when
    ``path`` is given. Returns the matplotlib ``Figure``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not isinstance(steps, RefineSteps):
        raise ValueError(f"steps must be the RefineSteps from refine(), got {type(steps).__name__}")
    s = steps.numpy()
    if s.merged.ndim != 2:
        raise ValueError(
            f"plot_pipeline draws one image, got steps of shape {s.merged.shape}; "
            "pick one with steps.select(index)"
        )
    H, W = s.merged.shape
    masked = s.masked_image
    img = None
    if image is not None:
        img = to_uint8_image(image)
        if masked is None:
            o = s.options
            masked = mask_image(
                img,
                s.merged,
                filter=o.filter,
                keep_percentage=o.keep_percentage,
                threshold=o.threshold,
            )
    lower, upper = (float(v) for v in s.bounds)

    fig = Figure(figsize=(16, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 5)
    panels = axes.ravel()
    for ax in panels:
        ax.set_xticks([])
        ax.set_yticks([])

    def show(ax, data, label, **kwargs):
        ax.set_title(label, fontsize=10)
        if data is None:
            ax.text(0.5, 0.5, "no image", ha="center", va="center", transform=ax.transAxes)
            return
        ax.imshow(data, interpolation="nearest", **kwargs)

    show(panels[0], img, "image")
    show(panels[1], s.low, f"low-res CAM ({s.low.shape[0]}x{s.low.shape[1]})", cmap="jet")
    ax = panels[2]
    show(
        ax, s.low_resized, f"ROI (>{s.options.roi_percentile:g}th pct) + focal points", cmap="gray"
    )
    ax.imshow(np.ma.masked_where(~s.roi, s.roi), cmap="autumn", alpha=0.45, vmin=0, vmax=1)
    points = np.argwhere(s.focal_points)
    if len(points):
        ax.scatter(points[:, 1], points[:, 0], s=12, c="cyan", edgecolors="black", linewidths=0.5)
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    show(panels[3], s.blurred, f"blurred high-res CAM ({H}x{W})", cmap="jet", vmin=0, vmax=1)
    show(panels[4], s.edges, "edges (Sobel)", cmap="magma", vmin=0, vmax=1)

    ax = panels[5]
    ax.set_title("edges in ROI: bounds", fontsize=10)
    inside = s.edges[s.roi]
    if inside.size:
        ax.hist(inside, bins=40, range=(0, 1), color="gray")
        ax.axvline(lower, color="tab:blue", label=f"lower {lower:.2f}")
        ax.axvline(upper, color="tab:red", label=f"upper {upper:.2f}")
        ax.legend(fontsize=8)
        ax.set_xticks([0, 0.5, 1])
    else:
        ax.text(0.5, 0.5, "empty ROI", ha="center", va="center", transform=ax.transAxes)

    show(panels[6], s.segmented, "region growing", cmap="gray", vmin=0, vmax=1)
    show(panels[7], s.full_segment, "+ strong edges, holes filled", cmap="gray", vmin=0, vmax=1)
    show(panels[8], s.merged, f"refined CAM ({s.options.merge})", cmap="jet", vmin=0, vmax=1)
    show(panels[9], masked, f"masked image ({s.options.filter})")
    if title:
        fig.suptitle(title)

    if path is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        with atomic_write(path, "wb") as f:
            f.write(buffer.getvalue())
    return fig
