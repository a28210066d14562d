"""A localization benchmark with exact object masks, made from Fashion-MNIST.

Fashion-MNIST's ten classes include near-twins (shirt, T-shirt, pullover, coat), much as the
paper's 398 animal classes do. Each canvas here holds one item, scaled and placed at random,
over a smooth noisy background with clutter — fragments of items of *other* classes — so that
a map which lights up "anything bright" loses localization score.

The object is exact by construction:

- the item is resized (PIL bilinear) from 28×28 to ``size``×``size`` pixels;
- its **mask** is ``binary_fill_holes(resized >= mask_threshold)`` (8-bit intensities);
- exactly the mask's pixels are written to the canvas (the item's value times a light colour
  tint); no other pixel of the item is, so there is no faint halo outside the mask;
- clutter pixels lie outside the mask dilated by ``ignore_width + 1`` pixels (3×3 steps), so
  they never touch the object nor its ignore ring; they may lie inside its bounding box.

Trimaps follow the Oxford-IIIT Pet convention: 1 = object (exactly the mask), 2 = background,
3 = ignore — the ring of ``ignore_width`` pixels just outside the mask, a tolerance for
upsampled maps (the mask itself has no annotation uncertainty, so no object pixel is ignored).
Boxes are the mask's tight box with inclusive integer corners ``x1, y1, x2, y2``.

Output layout (see :func:`make_fashion_loc`)::

    out/train/<k>_<class>/NNNNN.png   RGB canvases from the Fashion-MNIST train split
    out/test/<k>_<class>/NNNNN.png    RGB canvases from the t10k split
    out/eval/images/NNNNN.png         the test canvases again (hard links when possible)
    out/eval/trimaps/NNNNN.png        1 object, 2 background, 3 ignore
    out/eval/boxes.csv                file,x1,y1,x2,y2,label
    out/eval/labels.csv               file,label,name
    out/items.csv                     how each canvas was made (source item, size, position)
    out/meta.json                     parameters, class names, counts, seed, source
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import shutil
import struct
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from .. import __version__
from ..utils import atomic_save_json, swap_folder_into_place

__all__ = [
    "CLASS_FOLDERS",
    "DEFAULT_SOURCE",
    "FASHION_MNIST_CLASSES",
    "item_mask",
    "load_fashion_mnist",
    "make_fashion_loc",
    "resize_item",
]

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# The index prefix keeps the sorted folder order (a folder-based trainer's labels) = class index.
CLASS_FOLDERS = tuple(
    f"{i}_{name.lower().replace('/', '_').replace(' ', '_')}"
    for i, name in enumerate(FASHION_MNIST_CLASSES)
)
_SPLIT_PREFIX = {"train": "train", "test": "t10k", "t10k": "t10k"}
_IDX_MAGIC = {"images": 2051, "labels": 2049}
_BACKGROUND_MAX = 48.0  # smooth background noise stays well below most garment intensities
_TINT_STRENGTH = 0.35  # each channel multiplied by a value in [1 - strength, 1]
_MIN_MASK_PIXELS = 16
_PLACEMENT_TRIES = 20


def load_fashion_mnist(
    source: str | os.PathLike | None = None, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Read Fashion-MNIST's idx files: ``(images (N, 28, 28) uint8, labels (N,) int64)``.

    ``source`` holds ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``; the default is
    where Debian's ``dataset-fashion-mnist`` package puts them. ``split`` is ``"train"``
    (60 000 items) or ``"test"`` / ``"t10k"`` (10 000).

    Raises:
        FileNotFoundError: the files are missing (the message says how to install them).
        ValueError: an unknown split, or a file that is not an idx file of the expected kind.
    """
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    source = Path(source) if source is not None else DEFAULT_SOURCE
    prefix = _SPLIT_PREFIX[split]
    images = _read_idx(_find_idx(source, f"{prefix}-images-idx3-ubyte"), "images")
    labels = _read_idx(_find_idx(source, f"{prefix}-labels-idx1-ubyte"), "labels").astype(np.int64)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(
            f"{source}: {split} images {images.shape} do not match labels {labels.shape}"
        )
    if labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{source}: {split} labels outside 0-9")
    return images, labels


def _find_idx(source: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (source / name).is_file():
            return source / name
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {source}: install the Debian package "
        "(apt-get install dataset-fashion-mnist) or pass --source DIR holding "
        "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz"
    )


def _read_idx(path: Path, kind: str) -> np.ndarray:
    """Parse an idx file (big-endian header: magic, then one uint32 per dimension)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    if magic != _IDX_MAGIC[kind]:
        raise ValueError(
            f"{path}: not an idx {kind} file (magic {magic}, expected {_IDX_MAGIC[kind]})"
        )
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated ({len(data) - offset} bytes of data for shape {dims})")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def resize_item(item: np.ndarray, size: int) -> np.ndarray:
    """Resize a ``(28, 28)`` uint8 item to ``(size, size)`` uint8 with PIL's bilinear filter."""
    if size == item.shape[0] and size == item.shape[1]:
        return item.copy()
    return np.asarray(Image.fromarray(item).resize((size, size), Image.Resampling.BILINEAR))


def item_mask(resized: np.ndarray, *, threshold: int = 32) -> np.ndarray:
    """The object's pixels: ``binary_fill_holes(resized >= threshold)``, bool ``(s, s)``.

    Filling enclosed holes keeps dark patterns inside a garment part of the object (they are
    pasted too), while open gaps, such as between trouser legs, stay background.
    """
    return ndi.binary_fill_holes(resized >= threshold)


def _tints(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3)`` float32 colour multipliers in ``[1 - _TINT_STRENGTH, 1]``."""
    return (1.0 - rng.uniform(0.0, _TINT_STRENGTH, size=(n, 3))).astype(np.float32)


def _interpolation_matrix(n: int, points: int) -> np.ndarray:
    """``(n, points)`` weights that linearly interpolate ``points`` control values onto ``n`` pixels."""
    t = np.linspace(0.0, points - 1, n)
    i = np.minimum(t.astype(int), points - 2)
    w = np.zeros((n, points), dtype=np.float32)
    w[np.arange(n), i] = 1.0 - (t - i)
    w[np.arange(n), i + 1] = t - i
    return w


_IN_PLANE_CROSS = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_CROSS[1] = ndi.generate_binary_structure(2, 1)


def _fill_holes_frames(stack: np.ndarray) -> np.ndarray:
    """``binary_fill_holes`` of each ``(B, H, W)`` frame; each frame's border must be background.

    Background regions (4-connected, as ``binary_fill_holes``' default) that reach a frame's
    border stay background; all others are holes. One ``label`` call serves the whole batch.
    """
    labels, n = ndi.label(~stack, structure=_IN_PLANE_CROSS)
    outside = np.zeros(n + 1, dtype=bool)
    for edge in (labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]):
        outside[edge] = True
    return ~outside[labels]


def _dilate_frames(stack: np.ndarray, r: int) -> np.ndarray:
    """Dilate each ``(B, H, W)`` frame by a ``(2r+1)²`` square; frames need a margin of ``r``."""
    rows = stack.copy()
    for d in range(1, r + 1):
        rows[:, d:] |= stack[:, :-d]
        rows[:, :-d] |= stack[:, d:]
    out = rows.copy()
    for d in range(1, r + 1):
        out[:, :, d:] |= rows[:, :, :-d]
        out[:, :, :-d] |= rows[:, :, d:]
    return out


def _place(shape: tuple[int, int], small: np.ndarray, top: int, left: int) -> np.ndarray:
    """A bool array of ``shape`` holding ``small`` at ``(top, left)``, clipped at the edges."""
    out = np.zeros(shape, dtype=bool)
    h, w = small.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + h, shape[0]), min(left + w, shape[1])
    out[y0:y1, x0:x1] = small[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


@dataclass(frozen=True)
class _Options:
    canvas: int
    item_size: tuple[int, int]
    clutter: int
    clutter_size: tuple[int, int]
    mask_threshold: int
    ignore_width: int


def _render_chunk(
    images: np.ndarray,
    by_class: list[np.ndarray],
    items: np.ndarray,
    label: int,
    seed: list[int],
    opt: _Options,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Render canvases of ``items`` (indices into ``images``, all of class ``label``).

    Returns ``(rgb (B, C, C, 3) uint8, trimaps (B, C, C) uint8, records)``. Two random streams:
    ``seed + [0]`` draws sizes, positions, tints and backgrounds, ``seed + [1]`` the clutter;
    so the same seed with ``clutter=0`` gives the same canvases without the clutter.
    """
    rng = np.random.default_rng([*seed, 0])
    rng_clutter = np.random.default_rng([*seed, 1])
    b_count, c = len(items), opt.canvas
    gap = opt.ignore_width + 1
    sizes = rng.integers(opt.item_size[0], opt.item_size[1] + 1, size=b_count)
    ys = rng.integers(0, c - sizes + 1)
    xs = rng.integers(0, c - sizes + 1)
    tints, background_tints = _tints(rng, b_count), _tints(rng, b_count)
    coarse = rng.random((b_count, 5, 5), dtype=np.float32) * _BACKGROUND_MAX
    offsets = rng.integers(0, c, size=(b_count, 2))
    # Fine texture: windows of one noise tile per chunk cost far less than fresh draws.
    noise = rng.standard_normal((2 * c, 2 * c), dtype=np.float32) * 4.0

    interp = _interpolation_matrix(c, 5)
    windows = np.lib.stride_tricks.sliding_window_view(noise, (c, c))[offsets[:, 0], offsets[:, 1]]
    background = np.clip(interp @ coarse @ interp.T + windows, 0.0, 255.0)
    rgb = background[..., None] * background_tints[:, None, None, :]

    # Each item in a frame with a margin of `gap`, so masks and their dilations share one array.
    frame = opt.item_size[1] + 2 * gap
    values = np.zeros((b_count, frame, frame), dtype=np.uint8)
    for b, (index, size) in enumerate(zip(items, sizes, strict=True)):
        values[b, gap : gap + size, gap : gap + size] = resize_item(images[index], int(size))
    masks = _fill_holes_frames(values >= opt.mask_threshold)
    near = _dilate_frames(masks, gap)
    ring = _dilate_frames(masks, opt.ignore_width)

    n_frag = b_count * opt.clutter
    patches, footprints, sides = _cut_fragments(images, by_class, label, n_frag, rng_clutter, opt)
    fragment_tints = _tints(rng_clutter, n_frag)
    high = (c - sides + 1)[:, None, None]
    tries = rng_clutter.integers(0, high, size=(n_frag, _PLACEMENT_TRIES, 2)).tolist()

    trimaps = np.full((b_count, c, c), 2, dtype=np.uint8)
    records = []
    for b in range(b_count):
        top, left = int(ys[b]) - gap, int(xs[b]) - gap
        forbidden = _place((c, c), near[b], top, left)
        placed = 0
        for f in range(b * opt.clutter, (b + 1) * opt.clutter):
            p = int(sides[f])
            placed += _paste_fragment(
                rgb[b],
                forbidden,
                patches[f, :p, :p],
                footprints[f, :p, :p],
                fragment_tints[f],
                tries[f],
            )
        # The item lies inside the canvas, so placing clips only empty margin.
        mask = _place((c, c), masks[b], top, left)
        if not mask.any():  # items were pre-filtered for enough bright pixels
            raise RuntimeError(
                f"Fashion-MNIST item {items[b]} has no pixel >= {opt.mask_threshold}"
            )
        rgb[b][mask] = values[b][masks[b]][:, None] * tints[b]
        if opt.ignore_width > 0:
            trimaps[b][_place((c, c), ring[b], top, left)] = 3
        trimaps[b][mask] = 1
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        records.append(
            {
                "label": label,
                "source_index": int(items[b]),
                "size": int(sizes[b]),
                "x": int(xs[b]),
                "y": int(ys[b]),
                "clutter": placed,
                "box": (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])),
            }
        )
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), trimaps, records


def _cut_fragments(
    images: np.ndarray,
    by_class: list[np.ndarray],
    label: int,
    n: int,
    rng: np.random.Generator,
    opt: _Options,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut ``n`` clutter fragments from random items of classes other than ``label``.

    Each fragment is a ``p``×``p`` crop (``p`` drawn from ``clutter_size``, at most the item
    size) of an item shown at a random item size, centred on a random bright pixel so that it
    holds part of the item rather than its black margin. Sampling is bilinear, in one batch.

    Returns ``(patches (n, P, P) float32, footprints (n, P, P) bool, sides (n,) int)`` with
    ``P = clutter_size[1]``; only the top-left ``p``×``p`` of each is used.
    """
    side_max = opt.clutter_size[1]
    if n == 0:
        empty = np.zeros((0, side_max, side_max), dtype=np.float32)
        return empty, empty.astype(bool), np.zeros(0, dtype=np.int64)
    other = rng.integers(0, 9, size=n)
    other += other >= label
    picks = rng.random(n)
    sources = images[
        [by_class[o][int(u * len(by_class[o]))] for o, u in zip(other, picks, strict=True)]
    ]
    sources = sources.astype(np.float32).reshape(n, 28, 28)
    sizes = rng.integers(opt.item_size[0], opt.item_size[1] + 1, size=n)
    sides = np.minimum(rng.integers(opt.clutter_size[0], side_max + 1, size=n), sizes)
    # A uniformly random bright pixel: the arg-max of random scores on bright pixels only.
    scores = rng.random((n, 28 * 28)) * (sources.reshape(n, -1) >= opt.mask_threshold)
    cy, cx = np.divmod(scores.argmax(axis=1), 28)
    extent = sides * 28 / sizes  # the crop's side in source pixels
    y0 = np.clip(cy + 0.5 - extent / 2, 0.0, 28 - extent)
    x0 = np.clip(cx + 0.5 - extent / 2, 0.0, 28 - extent)
    # Source coordinates of the output pixel centres, then bilinear weights clamped at the edge.
    steps = (np.arange(side_max) + 0.5)[None, :] * (extent / sides)[:, None] - 0.5
    ys, xs = np.clip(y0[:, None] + steps, 0, 27), np.clip(x0[:, None] + steps, 0, 27)
    y_lo, x_lo = np.minimum(ys.astype(int), 26), np.minimum(xs.astype(int), 26)
    wy, wx = (ys - y_lo)[:, :, None], (xs - x_lo)[:, None, :]
    k = np.arange(n)[:, None, None]
    yl, xl = y_lo[:, :, None], x_lo[:, None, :]
    patches = (
        sources[k, yl, xl] * (1 - wy) * (1 - wx)
        + sources[k, yl, xl + 1] * (1 - wy) * wx
        + sources[k, yl + 1, xl] * wy * (1 - wx)
        + sources[k, yl + 1, xl + 1] * wy * wx
    ).astype(np.float32)
    inside = np.arange(side_max)[None, :] < sides[:, None]
    footprints = (patches >= opt.mask_threshold) & inside[:, :, None] & inside[:, None, :]
    return patches, footprints, sides


def _paste_fragment(
    rgb: np.ndarray,
    forbidden: np.ndarray,
    patch: np.ndarray,
    footprint: np.ndarray,
    tint: np.ndarray,
    tries: list[list[int]],
) -> int:
    """Paste a fragment at the first of ``tries`` where it misses ``forbidden``; 1 if placed."""
    p = footprint.shape[0]
    for py, px in tries:
        if not (forbidden[py : py + p, px : px + p] & footprint).any():
            region = rgb[py : py + p, px : px + p]
            region[footprint] = patch[footprint][:, None] * tint
            return 1
    return 0


def _check_range(name: str, pair: tuple[int, int], lo: int, hi: int) -> tuple[int, int]:
    a, b = (int(v) for v in pair)
    if not lo <= a <= b <= hi:
        raise ValueError(f"{name} must satisfy {lo} <= min <= max <= {hi}, got {pair}")
    return a, b


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_fashion_loc(
    out: str | os.PathLike,
    *,
    canvas: int = 96,
    train_per_class: int = 1000,
    test_per_class: int = 200,
    clutter: int = 4,
    seed: int = 0,
    source: str | os.PathLike | None = None,
    item_size: tuple[int, int] = (28, 56),
    clutter_size: tuple[int, int] = (8, 14),
    mask_threshold: int = 32,
    ignore_width: int = 1,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Generate the Fashion-MNIST localization benchmark in ``out`` (layout in the module doc).

    Train canvases use Fashion-MNIST's train split, test and eval canvases its t10k split;
    items are drawn per class without repetition while the split has enough (6000 / 1000 a
    class), then reused (``meta["reused_items"]``). The files depend only on the arguments
    (not on ``workers``); the test set does not depend on the train count. The whole folder is
    written beside ``out`` and renamed into place at the end, so a crash leaves no half-made
    benchmark.

    Args:
        out: output folder; must not exist unless ``overwrite``.
        canvas: canvas side in pixels.
        train_per_class, test_per_class: canvases per class and split (0 skips a split).
        clutter: fragments tried per canvas (fewer are placed when no free spot is found).
        item_size: ``(min, max)`` side of the resized item, ``8 <= min <= max <= canvas``.
        clutter_size: ``(min, max)`` side of a clutter fragment.
        mask_threshold: 8-bit intensity at which a resized item pixel belongs to the object.
        ignore_width: width of the ignore ring outside the mask (0: none).
        workers: processes that render and encode PNGs (default: CPU count, at most 8;
            1 renders in this process).

    Returns:
        The contents of ``meta.json``.

    Example::

        meta = make_fashion_loc("fashion-loc", train_per_class=100, test_per_class=20, seed=1)
        # LocalizationDataset("fashion-loc/eval") reads the masks and boxes back.
    """
    t0 = time.perf_counter()
    out = Path(out).absolute()
    opt = _check_arguments(
        canvas,
        item_size,
        clutter,
        clutter_size,
        mask_threshold,
        ignore_width,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
    )
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite")
    source = Path(source) if source is not None else DEFAULT_SOURCE
    workers = workers or min(os.cpu_count() or 1, 8)
    work = out.with_name(f".{out.name}.partial-{os.getpid()}")
    if work.exists():
        shutil.rmtree(work)
    tally = {"counts": {}, "reused": False, "clutter_placed": 0}
    try:
        for split, per_class, split_id in (
            ("train", train_per_class, 0),
            ("test", test_per_class, 1),
        ):
            tally["counts"][split] = dict.fromkeys(CLASS_FOLDERS, 0)
            if per_class:
                _make_split(
                    work, split, split_id, per_class, source, opt, seed, workers, progress, tally
                )
        meta = _meta(
            source, seed, opt, train_per_class, test_per_class, tally, time.perf_counter() - t0
        )
        atomic_save_json(meta, work / "meta.json")
        swap_folder_into_place(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return meta


def _check_arguments(
    canvas, item_size, clutter, clutter_size, mask_threshold, ignore_width, **counts
) -> _Options:
    """The rendering options, every argument checked (a ``ValueError`` naming the bad one)."""
    if canvas < 8:
        raise ValueError(f"canvas must be at least 8 pixels, got {canvas}")
    for name, value in (*counts.items(), ("clutter", clutter), ("ignore_width", ignore_width)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if not 1 <= mask_threshold <= 255:
        raise ValueError(f"mask_threshold must be in 1..255, got {mask_threshold}")
    return _Options(
        canvas=canvas,
        item_size=_check_range("item_size", item_size, 8, canvas),
        clutter=clutter,
        clutter_size=_check_range("clutter_size", clutter_size, 1, canvas),
        mask_threshold=mask_threshold,
        ignore_width=ignore_width,
    )


def _make_split(
    work, split, split_id, per_class, source, opt, seed, workers, progress, tally
) -> None:
    """Render one split's canvases into ``work`` (train/ or test/ + eval/) and count them."""
    images, labels = load_fashion_mnist(source, split)
    by_class = _usable_by_class(images, labels, opt.mask_threshold)
    tally["reused"] |= per_class > min(len(pool) for pool in by_class)
    for folder in CLASS_FOLDERS:
        (work / split / folder).mkdir(parents=True, exist_ok=True)
    if split == "test":
        for sub in ("images", "trimaps"):
            (work / "eval" / sub).mkdir(parents=True, exist_ok=True)
    tasks = []
    for k in range(10):
        order = np.random.default_rng([seed, split_id, k]).permutation(by_class[k])
        order = np.resize(order, per_class)  # repeats the permutation if more are asked
        for j in range(0, per_class, _CHUNK):
            seq = [seed, split_id, k, j // _CHUNK]
            tasks.append((split, k, order[j : j + _CHUNK], seq, k * per_class + j))
    records = []
    with tqdm(
        total=10 * per_class, desc=f"fashion-loc {split}", unit="img", disable=not progress
    ) as bar:
        state = {"images": images, "by_class": by_class, "opt": opt, "work": work}
        for chunk in _run_tasks(tasks, workers, state):
            records += chunk
            bar.update(len(chunk))
    for r in records:
        tally["counts"][split][CLASS_FOLDERS[r["label"]]] += 1
        tally["clutter_placed"] += r["clutter"]
    _write_records(work, split, records)


def _meta(
    source: Path, seed, opt: _Options, train_per_class, test_per_class, tally, seconds
) -> dict:
    """What ``meta.json`` records: how the benchmark was made, its conventions, its counts."""
    return {
        "generator": "hrcam.datasets.fashion_loc",
        "hrcam_version": __version__,
        "source": str(source.absolute()),
        "source_sha256": {
            p.name: _sha256(p)
            for p in sorted(source.glob("*-ubyte*"))
            if p.name.startswith(("train-", "t10k-"))
        },
        "seed": seed,
        "canvas": opt.canvas,
        "train_per_class": train_per_class,
        "test_per_class": test_per_class,
        "item_size": list(opt.item_size),
        "clutter": opt.clutter,
        "clutter_size": list(opt.clutter_size),
        "clutter_placed": tally["clutter_placed"],
        "mask_threshold": opt.mask_threshold,
        "ignore_width": opt.ignore_width,
        "clutter_gap": opt.ignore_width + 1,
        "mask_definition": (
            "binary_fill_holes(bilinear_resize(item, size) >= mask_threshold); exactly these "
            "pixels are written to the canvas"
        ),
        "trimap": "1 object (= mask), 2 background, 3 ignore (ring of ignore_width px outside the mask)",
        "box_convention": "x1,y1,x2,y2 tight box of the mask, inclusive integer pixel corners",
        "classes": list(FASHION_MNIST_CLASSES),
        "folders": list(CLASS_FOLDERS),
        "counts": tally["counts"],
        "reused_items": tally["reused"],
        "seconds": round(seconds, 2),
    }


_CHUNK = 50  # canvases per task; each task has its own seeds, so results do not depend on workers
_worker_state: dict = {}  # per worker process: the arrays and options _init_worker received


def _usable_by_class(images: np.ndarray, labels: np.ndarray, threshold: int) -> list[np.ndarray]:
    """Indices of each class's items with at least ``_MIN_MASK_PIXELS`` pixels >= ``threshold``."""
    usable = (images >= threshold).sum(axis=(1, 2)) >= _MIN_MASK_PIXELS
    return [np.flatnonzero((labels == k) & usable) for k in range(10)]


def _init_worker(state: dict) -> None:
    # Under "fork" the state arrives without a copy; other start methods pickle it once a worker.
    _worker_state.update(state)


def _run_tasks(tasks: list, workers: int, state: dict) -> Iterator[list[dict]]:
    """Run ``_write_chunk`` over ``tasks`` in order, in this process or in a pool."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _write_chunk(state, task)
        return
    with ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), initializer=_init_worker, initargs=(state,)
    ) as pool:
        yield from pool.map(_pool_task, tasks)


def _pool_task(task: tuple) -> list[dict]:
    return _write_chunk(_worker_state, task)


def _write_chunk(state: dict, task: tuple) -> list[dict]:
    """Render one task's canvases and write their PNGs; return their records."""
    split, label, items, seq, first = task
    work: Path = state["work"]
    rgbs, trimaps, records = _render_chunk(
        state["images"], state["by_class"], items, label, seq, state["opt"]
    )
    for n, (rgb, trimap, rec) in enumerate(zip(rgbs, trimaps, records, strict=True), start=first):
        rec.update(split=split, file=f"{n:05d}.png")
        path = work / split / CLASS_FOLDERS[label] / rec["file"]
        _save_png(rgb, path)
        if split == "test":
            _link_or_copy(path, work / "eval" / "images" / rec["file"])
            _save_png(trimap, work / "eval" / "trimaps" / rec["file"])
    return records


def _save_png(array: np.ndarray, path: Path) -> None:
    path.write_bytes(_encode_png(array))


def _encode_png(array: np.ndarray, *, level: int = 1) -> bytes:
    """Encode a uint8 ``(H, W)`` gray or ``(H, W, 3)`` RGB array as PNG bytes.

    Scanlines go unfiltered into one zlib stream. On these small canvases that is about twice
    as fast as Pillow's adaptive filtering at the same compression level, with files no larger
    (the benchmark's generation time is dominated by PNG encoding). Pillow reads the result.
    """
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)
    ):
        raise ValueError(
            f"expected a uint8 (H, W) or (H, W, 3) array, got {array.dtype} {array.shape}"
        )
    h, w = array.shape[:2]
    rows = np.zeros((h, 1 + array[0].size), dtype=np.uint8)  # first byte of a row: filter 0
    rows[:, 1:] = array.reshape(h, -1)
    colour_type = 0 if array.ndim == 2 else 2

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
        + chunk(b"IEND", b"")
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # file systems without hard links
        shutil.copy2(src, dst)


def _write_records(work: Path, split: str, records: list[dict]) -> None:
    """Append this split's rows to ``items.csv``; the test split also writes eval's CSVs."""
    items = work / "items.csv"
    new = not items.exists()
    with open(items, "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        if new:
            w.writerow(
                ["split", "file", "label", "name", "source_index", "size", "x", "y", "clutter"]
            )
        for r in records:
            w.writerow(
                [
                    split,
                    f"{CLASS_FOLDERS[r['label']]}/{r['file']}",
                    r["label"],
                    FASHION_MNIST_CLASSES[r["label"]],
                    r["source_index"],
                    r["size"],
                    r["x"],
                    r["y"],
                    r["clutter"],
                ]
            )
    if split != "test":
        return
    with open(work / "eval" / "boxes.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "x1", "y1", "x2", "y2", "label"])
        w.writerows([r["file"], *r["box"], r["label"]] for r in records)
    with open(work / "eval" / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "label", "name"])
        w.writerows([r["file"], r["label"], FASHION_MNIST_CLASSES[r["label"]]] for r in records)
