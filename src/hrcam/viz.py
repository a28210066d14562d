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

import functools
import io
import os

import numpy as np

try:  # a dependency; without it the overlays are blended by Pillow, to the same bytes
    import numba
except ImportError:  # pragma: no cover
    numba = None

from PIL import Image

from .arrays import normalize_map, to_numpy
from .io import DISPLAY_SIDE
from .postprocess.backend import one_image
from .postprocess.steps import RefineSteps
from .utils import atomic_write

mask_image = one_image.mask_image
resize_bilinear = one_image.resize_bilinear

__all__ = [
    "DEFAULT_CMAP",
    "cam_pictures",
    "colorize",
    "colour_table",
    "display_image",
    "display_pictures",
    "masked_picture",
    "overlay_cam",
    "pipeline_image",
    "plot_pipeline",
    "save_image",
    "save_png",
    "to_uint8_image",
]


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


#: The colour map of every heat map hrcam draws (overlays, the pipeline figure, the report, the
#: app): perceptually uniform, dark to bright. ``"jet"`` and any matplotlib name also work.
DEFAULT_CMAP = "inferno"


@functools.lru_cache(maxsize=16)
def colour_table(cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """The 256 RGB colours (uint8 ``(256, 3)``) of a matplotlib colour map, looked up once."""
    from matplotlib import colormaps

    try:
        colormap = colormaps[cmap]
    except KeyError:
        raise ValueError(
            f"unknown matplotlib colour map {cmap!r}; try {DEFAULT_CMAP!r}, 'turbo' or 'jet'"
        ) from None
    table = colormap(np.linspace(0, 1, 256), bytes=True)[:, :3]
    table.setflags(write=False)
    return table


def colorize(cam, *, cmap: str = DEFAULT_CMAP, normalize: bool = True) -> np.ndarray:
    """A CAM ``(H, W)`` as a uint8 RGB picture ``(H, W, 3)``: normalised to [0, 1] here (or
    taken as already in [0, 1] with ``normalize=False``), then coloured by ``cmap``."""
    c = to_numpy(cam)
    if c.ndim != 2:
        raise ValueError(f"cam must be one (H, W) map, got shape {c.shape}")
    return np.asarray(_coloured(normalize_map(c) if normalize else c, cmap))


def _coloured(v: np.ndarray, cmap: str):
    """A map taken as [0, 1] (clipped; NaN as 0) as an RGB Pillow image: each pixel the table's
    colour nearest ``255 v``, looked up by Pillow's palette conversion (in C, faster than
    NumPy's take along the table; docs/speed.md)."""
    from PIL import Image

    index = np.fmin(np.fmax(v.astype(np.float32, copy=False), 0), 1)  # fmax(NaN, 0) is 0
    index *= 255
    index += 0.5
    picture = Image.fromarray(index.astype(np.uint8))
    picture.putpalette(_palette(cmap))
    return picture.convert("RGB")


@functools.lru_cache(maxsize=16)
def _palette(cmap: str) -> bytes:
    return colour_table(cmap).tobytes()


def overlay_cam(image, cam, *, alpha: float = 0.5, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """``image`` with ``cam`` in colour on top: ``(1 - alpha) * image + alpha * colour``.

    ``image``: ``(H, W)`` or ``(H, W, 3)`` (see :func:`to_uint8_image`); ``cam``: ``(h, w)``,
    normalised to its own range and resized bilinearly to ``H x W`` (if it is not that size).
    Returns ``(H, W, 3)`` uint8, rounded to within 1 of the exact blend (``alpha`` 0 and 1 give
    the image and the colours exactly).
    """
    from PIL import Image

    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = to_uint8_image(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3])
    c = to_numpy(cam)
    if c.ndim != 2:
        raise ValueError(f"cam must be one (h, w) map, got shape {c.shape}")
    v = normalize_map(c)
    if v.shape != img.shape[:2]:
        v = resize_bilinear(v, img.shape[:2])
    if numba is not None:
        return _blend_by_table(img, np.ascontiguousarray(v), _blend_table(cmap, float(alpha)))
    return np.asarray(Image.blend(Image.fromarray(img), _coloured(v, cmap), alpha))


@functools.lru_cache(maxsize=16)
def _blend_table(cmap: str, alpha: float) -> np.ndarray:
    """Every result of ``Image.blend(image, colours, alpha)`` for one channel: entry
    ``(768 k + 256 c + a)`` is channel ``c`` of colour ``k`` blended over the value ``a``, in
    Pillow's arithmetic (``uint8(a + alpha (b - a))`` in float32, truncated)."""
    a = np.arange(256, dtype=np.float32)
    b = colour_table(cmap).astype(np.float32)[:, :, None]  # (256 colours, 3 channels, 1)
    table = (a + np.float32(alpha) * (b - a)).astype(np.int32).astype(np.uint8).ravel()
    table.setflags(write=False)
    return table


if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _blend_by_table(img, v, table):
        """:func:`overlay_cam`'s colouring and blending as one table lookup per value: the
        colour ``uint8(255 v + 0.5)`` of ``v`` clipped to [0, 1] (NaN as 0), as
        :func:`_coloured`, blended by :func:`_blend_table`. The same bytes as Pillow's palette
        conversion and blend, in half their time (docs/speed.md)."""
        height, width = v.shape
        out = np.empty((height, width, 3), np.uint8)
        rows = np.empty(width, np.int32)
        for i in range(height):
            for j in range(width):
                x = v[i, j]
                if not x > 0:  # NaN too
                    x = np.float32(0)
                elif x > 1:
                    x = np.float32(1)
                rows[j] = np.int32(x * np.float32(255) + np.float32(0.5)) * 768
            for j in range(width):
                for c in range(3):
                    out[i, j, c] = table[rows[j] + 256 * c + img[i, j, c]]
        return out


def save_png(array, path: str | os.PathLike) -> None:
    """Write an image (see :func:`to_uint8_image` for the accepted forms) as a PNG, atomically."""
    save_image(array, path)


def save_image(array, path: str | os.PathLike, *, quality: int = 88, durable: bool = True) -> None:
    """Write an image atomically, as PNG or JPEG (``quality``) by the path's suffix
    (``durable``: see :func:`hrcam.utils.atomic_write`)."""
    path = os.fspath(path)
    picture = to_uint8_image(array)
    if path.lower().endswith((".jpg", ".jpeg")):
        import cv2

        # OpenCV's libjpeg-turbo encodes ~40 % faster than Pillow's, same bytes (4:2:0); no
        # optimised Huffman tables: a second pass costs 2.4x the encoding for ~7 % smaller files.
        if picture.ndim == 3:
            picture = cv2.cvtColor(picture[..., :3], cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise ValueError(f"could not encode a {picture.shape} image as JPEG")
        data = encoded.tobytes()
    else:
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="PNG", compress_level=6)
        data = buffer.getvalue()
    with atomic_write(path, "wb", durable=durable) as f:
        f.write(data)


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

    s = _one_image_steps(steps)
    H, W = s.merged.shape
    img = None if image is None else to_uint8_image(image)
    masked = s.masked_image if s.masked_image is not None else _masked(s, img)
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


# -- the pipeline figure without matplotlib ---------------------------------------------------

_PANEL = 224  # pixels per panel side: a 224x224 model's maps are drawn pixel for pixel
_LABEL = 18  # label strip above a panel
_BAR = 22  # colour bar and its range below a heat map


def pipeline_image(
    steps: RefineSteps,
    image=None,
    *,
    title: str | None = None,
    ranges: dict[str, tuple[float, float]] | None = None,
    cmap: str = DEFAULT_CMAP,
    aspect: tuple[int, int] | None = None,
) -> np.ndarray:
    """The step-by-step pipeline figure as an RGB array, drawn with Pillow (no matplotlib).

    The same ten panels as :func:`plot_pipeline` — image, low-res CAM, ROI with the focal points,
    blurred high-res CAM, edges, the edges' histogram in the ROI with the growing bounds, the
    grown segment, the filled segment, the refined CAM, the masked image — each heat map with a
    colour bar and the value range it stands for (``ranges``: the raw ``"low"`` and ``"high"``
    CAMs' (min, max), shown instead of [0, 1]). ``aspect``: the photograph's (width,
    height); the network saw it stretched to a square, and the panels are drawn back at its own
    shape. Much faster than :func:`plot_pipeline` (no matplotlib), which is why ``hrcam
    explain`` draws it for every image.
    """
    from PIL import Image

    s = _one_image_steps(steps)
    ranges = ranges or {}
    img = None if image is None else to_uint8_image(image)
    masked = s.masked_image if s.masked_image is not None else _masked(s, img)
    heat = functools.partial(_heat_panel, cmap=cmap, aspect=aspect)
    panels = [
        _image_panel("image", img, aspect),
        heat(
            f"low-res CAM ({s.low.shape[0]}x{s.low.shape[1]})",
            s.low,
            ranges.get("low"),
            nearest=True,
        ),
        _roi_panel(s, aspect),
        heat(
            f"blurred high-res CAM ({s.merged.shape[0]}x{s.merged.shape[1]})",
            s.blurred,
            ranges.get("high"),
        ),
        heat("edges (Sobel)", s.edges, None),
        _histogram_panel(s),
        _mask_panel("region growing", s.segmented, aspect),
        _mask_panel("+ strong edges, holes filled", s.full_segment, aspect),
        heat(f"refined CAM ({s.options.merge})", s.merged, None),
        _image_panel(f"masked image ({s.options.filter})", masked, aspect),
    ]
    top = 26 if title else 4
    cell_w, cell_h = _PANEL + 8, _LABEL + _PANEL + _BAR + 6
    canvas = Image.new("RGB", (5 * cell_w + 4, top + 2 * cell_h), "white")
    if title:
        _text(canvas, (8, 4), title, (20, 20, 20), 15)
    for k, panel in enumerate(panels):
        canvas.paste(panel, (4 + (k % 5) * cell_w, top + (k // 5) * cell_h))
    return np.asarray(canvas)


def _one_image_steps(steps: RefineSteps) -> RefineSteps:
    if not isinstance(steps, RefineSteps):
        raise ValueError(f"steps must be the RefineSteps from refine(), got {type(steps).__name__}")
    s = steps.numpy()
    if s.merged.ndim != 2:
        raise ValueError(
            f"the pipeline figure draws one image, got steps of shape {s.merged.shape}; "
            "pick one with steps.select(index)"
        )
    return s


def _masked(s: RefineSteps, img):
    if img is None:
        return None
    o = s.options
    return mask_image(
        img, s.merged, filter=o.filter, keep_percentage=o.keep_percentage, threshold=o.threshold
    )


@functools.lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


@functools.lru_cache(maxsize=1024)
def _text_mask(text: str, size: int):
    """The anti-aliased coverage of ``text`` (an "L" image), rendered once: the panels' labels
    repeat from figure to figure, and rendering them was 40 % of the figure's time."""
    from PIL import Image, ImageDraw

    font = _font(size)
    _, _, right, bottom = font.getbbox(text)
    mask = Image.new("L", (max(1, right), max(1, bottom)), 0)
    ImageDraw.Draw(mask).text((0, 0), text, fill=255, font=font)
    return mask


def _text(canvas, xy: tuple[int, int], text: str, fill: tuple[int, int, int], size: int) -> None:
    """Draw ``text`` on ``canvas`` at ``xy`` in ``fill`` (as ``ImageDraw.text`` does)."""
    mask = _text_mask(text, size)
    x, y = xy
    canvas.paste(fill, (x, y, x + mask.width, y + mask.height), mask)


def _frame(label: str, picture, *, bar=None, aspect=None):
    """One panel: the label, the picture fitted into the square (at ``aspect`` = (width,
    height) if given, else its own shape), and an optional colour bar."""
    from PIL import Image

    panel = Image.new("RGB", (_PANEL + 8, _LABEL + _PANEL + _BAR + 6), "white")
    _text(panel, (2, 2), label, (30, 30, 30), 12)
    if picture is None:
        _text(panel, (_PANEL // 2 - 24, _LABEL + _PANEL // 2), "no image", (120, 120, 120), 12)
    else:
        pic = Image.fromarray(picture)
        width, height = aspect if aspect else pic.size
        scale = _PANEL / max(width, height, 1)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size != pic.size:  # a 224x224 model's maps fit as they are
            method = Image.Resampling.NEAREST if scale > 4 else Image.Resampling.BILINEAR
            pic = pic.resize(size, method)
        panel.paste(pic, ((_PANEL - size[0]) // 2, _LABEL + (_PANEL - size[1]) // 2))
    if bar is not None:
        cmap, lo, hi = bar
        strip = np.repeat(colour_table(cmap)[None, np.linspace(0, 255, _PANEL).astype(int)], 8, 0)
        panel.paste(Image.fromarray(np.ascontiguousarray(strip)), (0, _LABEL + _PANEL + 2))
        y = _LABEL + _PANEL + 10
        _text(panel, (0, y), f"{lo:.3g}", (60, 60, 60), 10)
        text = f"{hi:.3g}"
        _text(panel, (_PANEL - 6 * len(text), y), text, (60, 60, 60), 10)
    return panel


def _image_panel(label: str, img, aspect=None):
    picture = None if img is None else img[..., :3] if img.ndim == 3 else img
    return _frame(label, picture, aspect=aspect)


def _heat_panel(label, values, value_range, *, cmap, nearest=False, aspect=None):
    lo, hi = value_range if value_range is not None else (0.0, 1.0)
    v = np.asarray(values, dtype=np.float32)
    if nearest:  # a coarse grid: big blocks rather than a blur
        factor = max(1, _PANEL // max(v.shape))
        v = np.kron(v, np.ones((factor, factor), dtype=np.float32))
    picture = colorize(v, cmap=cmap, normalize=False)
    return _frame(label, picture, bar=(cmap, lo, hi), aspect=aspect)


def _mask_panel(label: str, mask, aspect=None):
    return _frame(label, np.asarray(mask, dtype=np.uint8) * 255, aspect=aspect)


def _roi_panel(s: RefineSteps, aspect=None):
    grey = (normalize_map(s.low_resized) * 200).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[s.roi] = (0.55 * rgb[s.roi] + 0.45 * np.array([255, 140, 0])).astype(np.uint8)
    from scipy import ndimage

    dots = ndimage.binary_dilation(s.focal_points, iterations=max(1, s.roi.shape[0] // 112))
    rgb[dots] = (0, 230, 255)
    return _frame(f"ROI (>{s.options.roi_percentile:g}th pct) + focal points", rgb, aspect=aspect)


def _histogram_panel(s: RefineSteps):
    """A 40-bin histogram of the edges inside the ROI, with the lower (blue) and upper (red)
    growing bounds, on axes: edge strength 0 to 1 across, pixel count (up to its maximum) up."""
    size, axis = _PANEL, 14  # the bottom rows hold the axis and its labels
    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    plot = size - axis
    canvas[plot, :] = 60  # the x axis
    canvas[: plot + 1, 0] = 60  # the y axis
    inside = s.edges[s.roi]
    peak = 0
    if inside.size:
        counts, _ = np.histogram(inside, bins=40, range=(0, 1))
        peak = int(counts.max())
        heights = (counts / max(1, peak) * (plot - 12)).astype(int)
        edges = np.linspace(1, size, 41).round().astype(int)  # bin k spans [edges[k], edges[k+1])
        for k, h in enumerate(heights):
            canvas[plot - h : plot, edges[k] : edges[k + 1] - 1] = 130
        for value, colour in ((s.bounds[0], (40, 90, 220)), (s.bounds[1], (220, 40, 40))):
            if np.isfinite(value):
                x = min(size - 1, int(value * size))
                canvas[:plot, max(0, x - 1) : x + 1] = colour
    lower, upper = (float(v) for v in s.bounds)
    panel = _frame(f"edges in ROI: bounds {lower:.2f}, {upper:.2f}", canvas)
    grey, y = (60, 60, 60), _LABEL + plot + 2
    _text(panel, (1, y), "0", grey, 10)
    _text(panel, (size // 2 - 30, y), "edge strength", grey, 10)
    _text(panel, (size - 8, y), "1", grey, 10)
    _text(panel, (4, _LABEL + 1), f"pixels (max {peak})", grey, 10)
    return panel


# -- the pictures of one explained image -----------------------------------------------------------


def display_image(image: Image.Image, side: int = DISPLAY_SIDE) -> np.ndarray:
    """The image no larger than ``side`` on either axis (tiny ones enlarged, pixels kept):
    ``(h, w, 3)`` uint8, what the report and the app show.

    Reduced by OpenCV's area average (each output pixel the mean of the source area it covers,
    antialiased, several times faster than Pillow's filters).
    """
    scale = min(1.0, side / max(image.size))
    if scale < 1.0:
        import cv2

        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return cv2.resize(np.asarray(image), size, interpolation=cv2.INTER_AREA)
    if max(image.size) < 64:
        factor = -(-64 // max(image.size))
        image = image.resize(
            (image.width * factor, image.height * factor), Image.Resampling.NEAREST
        )
    return np.asarray(image)


def cam_pictures(low, high, refined, *, cmap: str = DEFAULT_CMAP) -> dict[str, np.ndarray]:
    """The three CAMs in colour at the high-res CAM's size (``cam_low``: the low-res CAM
    resized bilinearly, as in the overlays; ``cam_high``; ``cam_refined``), each scaled to its
    own range; the report lays them over the image."""
    size = np.shape(high)
    return {
        "cam_low": colorize(resize_bilinear(normalize_map(low), size), cmap=cmap),
        "cam_high": colorize(high, cmap=cmap),
        "cam_refined": colorize(refined, cmap=cmap),
    }


def masked_picture(display: np.ndarray, steps, *, refined=None) -> np.ndarray:
    """``display`` masked by the refined CAM, with ``steps``' filter options (``refined``: that
    CAM already at display size, else ``steps.refined`` is resized)."""
    if refined is None:
        refined = resize_bilinear(np.asarray(steps.refined, dtype=np.float32), display.shape[:2])
    o = steps.options
    return mask_image(
        display, refined, filter=o.filter, keep_percentage=o.keep_percentage, threshold=o.threshold
    )


def display_pictures(
    display: np.ndarray, low, high, steps, *, opacity: float = 0.5, cmap: str = DEFAULT_CMAP
) -> dict[str, np.ndarray]:
    """The pictures a person looks at, at the display image's size: the low-res, high-res and
    refined CAMs blended over ``display`` (``overlay_low``, ``overlay_high``,
    ``overlay_refined``) and the image masked by the refined CAM (``masked``, with ``steps``'
    filter options). What the app shows, and ``hrcam explain --overlay-files`` writes.
    """
    # The refined CAM at display size, for both of its pictures; the other two are resized by
    # overlay_cam (compiled bilinear, as resize_bilinear).
    refined = resize_bilinear(np.asarray(steps.refined, dtype=np.float32), display.shape[:2])
    pictures = {
        key: overlay_cam(display, cam, alpha=opacity, cmap=cmap)
        for key, cam in (("overlay_low", low), ("overlay_high", high), ("overlay_refined", refined))
    }
    pictures["masked"] = masked_picture(display, steps, refined=refined)
    return pictures
