"""What ``hrcam explain`` reads: the image files and medical scans below its sources (a DICOM
series is its folder), their output names, the shard of a sharded run, and the inputs decoded
ahead of the model by a thread pool.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..io import IMAGE_EXTENSIONS, SCAN_SUFFIXES, ImageLoadError, find_images
from .folder import OUTPUT_MARKER

__all__ = [
    "DecodedImage",
    "InputItem",
    "collect_inputs",
    "decode_ahead",
    "output_name",
    "select_shard",
]

logger = logging.getLogger("hrcam.explain")


@dataclass(frozen=True)
class InputItem:
    """One file to explain and the name of its output folder (:func:`output_name`)."""

    path: Path
    name: str


@dataclass
class DecodedImage:
    """An input decoded for the model: the RGB image (no larger than needed) or the medical
    scan (:class:`hrcam.medical.Scan`), or the error."""

    item: InputItem
    image: Image.Image | None = None
    original_size: tuple[int, int] | None = None  # (width, height) of the file
    error: str | None = None
    source_size: int | None = None  # the file's size and modification time when it was read
    source_mtime_ns: int | None = None
    scan: object | None = None  # a Scan, for DICOM, NIfTI and 16-bit inputs

    @property
    def source(self):
        """What the explainer takes: the scan, else the image."""
        return self.image if self.scan is None else self.scan


def output_name(path: Path, base: Path | None) -> str:
    """The output folder name of one input: its path below ``base`` made safe for a folder
    name (``photos/a b.jpg`` → ``a_b``), then a short hash of the file's absolute path.

    The name depends on that file alone, never on what else is in the folder, so a resumed
    run finds each image's own results, and two files whose safe names agree (``a_b.jpg`` and
    ``a b.jpg``, ``x.jpg`` and ``x.png``, non-ASCII names) never share a folder.
    """
    rel = path.relative_to(base) if base is not None and base in path.parents else Path(path.name)
    last = rel.name
    for suffix in (*IMAGE_EXTENSIONS, *SCAN_SUFFIXES):
        if last.lower().endswith(suffix) and len(last) > len(suffix):
            last = last[: -len(suffix)]
            break
    parts = [*rel.parts[:-1], last]
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(parts)).strip("._")[:80] or "image"
    digest = hashlib.sha1(os.fsencode(path.resolve())).hexdigest()[:8]
    return f"{text}-{digest}"


def collect_inputs(
    sources: Sequence[str | os.PathLike], *, exclude: Sequence[str | os.PathLike] = ()
) -> tuple[list[InputItem], list[str]]:
    """Every image below ``sources`` (files as given, folders walked in sorted order), each with
    its output name (:func:`output_name`), and one message per source that does not exist.

    Folders in ``exclude`` (the run's own output) and other hrcam outputs are not walked.
    """
    items: list[InputItem] = []
    missing: list[str] = []
    seen: set[Path] = set()
    for source in sources:
        source = Path(source)
        if not source.exists():
            missing.append(f"{source}: no such file or folder")
            continue
        base = source if source.is_dir() else None
        found = 0
        for f in find_images([source], exclude=exclude, skip_if_contains=OUTPUT_MARKER, scans=True):
            if f.resolve() in seen:  # the same file named twice (a folder and a file in it)
                continue
            seen.add(f.resolve())
            items.append(InputItem(f, output_name(f, base)))
            found += 1
        if source.is_dir() and not found:
            logger.warning(
                "%s: no image files in this folder (looked for %s)",
                source,
                ", ".join(IMAGE_EXTENSIONS),
            )
    return items, missing


def select_shard(items: list[InputItem], shard: tuple[int, int]) -> list[InputItem]:
    """Every ``count``-th item from ``index``: shard ``(index, count)`` of a sharded run."""
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index must lie in [0, {count - 1}], got {index}")
    return items[index::count]


def _decode(item: InputItem, decode: Callable[[Path], Image.Image]) -> DecodedImage:
    from ..medical import ScanError, read_scan
    from ..scan_input import is_scan_item

    try:
        stat = item.path.stat()
        if is_scan_item(item.path):
            scan = read_scan(item.path)
            shape = scan.array.shape
            return DecodedImage(
                item, None, (shape[-1], shape[-2]), None, stat.st_size, stat.st_mtime_ns, scan
            )
        image = decode(item.path)
    except (ImageLoadError, ScanError, OSError) as err:
        return DecodedImage(item, error=str(err))
    size = image.info.get("hrcam_original_size", image.size)
    return DecodedImage(item, image, tuple(size), None, stat.st_size, stat.st_mtime_ns)


def decode_ahead(
    items: Sequence[InputItem],
    *,
    batch_size: int,
    decode: Callable[[Path], Image.Image],
    workers: int = 2,
) -> Iterator[list[DecodedImage]]:
    """Batches of decoded images, the next batch decoding in threads while this one is used.

    ``decode``: path → RGB image (``explainer.decode``, so every front-end sees the same
    pixels). Pillow releases the GIL while it decodes and resizes, so decoding overlaps the
    model.
    """
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if not batches:
        return
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="decode") as pool:

        def submit(batch) -> list[Future]:
            return [pool.submit(_decode, item, decode) for item in batch]

        pending = submit(batches[0])
        for k in range(len(batches)):
            following = submit(batches[k + 1]) if k + 1 < len(batches) else []
            yield [f.result() for f in pending]
            pending = following
