"""Small shared helpers: atomic file writes and logging setup."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_save_json",
    "atomic_save_npz",
    "atomic_torch_save",
    "atomic_write",
    "check_output_folder",
    "cpu_threads",
    "non_negative_int",
    "positive_int",
    "resolve_device",
    "sequential_opencv",
]


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "wb", *, durable: bool = True
) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    A crash or an exception inside the block leaves any earlier ``path`` untouched and no
    half-written file behind. ``mode`` is ``"wb"`` or ``"w"``. ``durable``: flush the file to
    the disk (``fsync``) before the rename, so that it survives a power cut too; ``False``
    skips that for outputs that a rerun can check and redo (``hrcam explain``'s
    per-image files: a power cut can leave such a file empty, never half-written).

    Example::

        with atomic_write("out/result.json", "w") as f:
            f.write("{}")
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def swap_folder_into_place(work: str | os.PathLike, out: str | os.PathLike) -> None:
    """Rename a finished folder ``work`` to ``out``, moving an old ``out`` aside first and
    removing it after: a reader sees the old folder or the new one, never half of either."""
    import shutil

    work, out = Path(work), Path(out)
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(work, out)
    if old.exists():
        shutil.rmtree(old)


def atomic_save_json(
    obj: Any, path: str | os.PathLike, *, indent: int | None = 2, durable: bool = True
) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (``durable``: see :func:`atomic_write`)."""
    with atomic_write(path, "w", durable=durable) as f:
        json.dump(obj, f, indent=indent, sort_keys=False)
        f.write("\n")


def atomic_save_npz(
    arrays: dict[str, Any], path: str | os.PathLike, *, durable: bool = True
) -> None:
    """Write ``arrays`` as an ``.npz`` (read back with ``np.load``) to ``path`` atomically
    (``durable``: see :func:`atomic_write`).

    Float arrays of 4 KiB or more are stored as they are (a CAM's float16 bytes hardly shrink
    under deflate, which would cost most of ``hrcam explain``'s writing time); everything else
    (masks, labels, the options) is deflated at level 1.
    """
    import numpy as np

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in arrays.items():
            array = np.asanyarray(value)
            entry = io.BytesIO()
            np.lib.format.write_array(entry, array, allow_pickle=False)
            stored = np.issubdtype(array.dtype, np.floating) and array.nbytes >= 4096
            archive.writestr(
                zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                entry.getvalue(),
                compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
                compresslevel=None if stored else 1,
            )
    with atomic_write(path, "wb", durable=durable) as f:
        f.write(buffer.getvalue())


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask, read once: reading it means setting it, which would race with
    other threads creating files (``explain``'s writers) if done per file."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (a crash keeps the previous checkpoint)."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


@contextlib.contextmanager
def sequential_opencv() -> Iterator[None]:
    """OpenCV's own thread pool off inside the block, restored after.

    hrcam's OpenCV calls (labelling one 224x224 mask, encoding one JPEG) are too small to gain
    from threads, and OpenCV's pool competes with PyTorch's for the same cores
    (docs/speed.md).
    """
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(0)  # 0: every function runs sequentially, in the calling thread
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


_MEMORY_KEPT = False


def keep_freed_memory() -> None:
    """Let the C allocator keep the memory PyTorch frees on the CPU instead of handing it back
    to the kernel (glibc's ``mallopt``: no trimming, the largest mmap threshold), so the next
    forward pass reuses it. Run-sized work (explaining a folder, an evaluation) otherwise spends
    as much time in the kernel, mapping and unmapping activations, as computing
    (docs/speed.md). Linux with glibc only; elsewhere nothing changes. Once per process."""
    global _MEMORY_KEPT
    if _MEMORY_KEPT or not sys.platform.startswith("linux"):
        return
    _MEMORY_KEPT = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_trim_threshold, 1 << 30)  # keep up to 1 GiB of freed memory
    libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest: smaller blocks from the heap


def resolve_device(name: str) -> str:
    """``"auto"`` → ``"cuda"`` when available, else ``"cpu"``; ``"cuda"`` without a GPU raises."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    return name


def cpu_threads(requested: int | None = None) -> int:
    """How many threads PyTorch gets on the CPU: ``requested`` (a ``--threads`` flag), else
    ``OMP_NUM_THREADS`` when it is set to a positive integer (``torchrun`` sets it to 1 for each
    of several processes, so that they do not compete for the cores), else every core."""
    if requested is not None:
        return requested
    try:
        from_env = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        from_env = 0
    return from_env if from_env >= 1 else max(1, os.cpu_count() or 1)


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1 (argparse names the flag in its error)."""
    return _bounded_int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 0."""
    return _bounded_int(text, 0, "an integer >= 0")


def int_in(minimum: int, maximum: int):
    """An ``argparse`` type: an integer in ``[minimum, maximum]``."""

    def parse(text: str) -> int:
        return _bounded_int(text, minimum, f"an integer in [{minimum}, {maximum}]", maximum)

    parse.__name__ = f"integer in [{minimum}, {maximum}]"
    return parse


def float_in(minimum: float, maximum: float):
    """An ``argparse`` type: a number in ``[minimum, maximum]``."""

    def parse(text: str) -> float:
        import argparse
        import math

        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and minimum <= value <= maximum):
            raise argparse.ArgumentTypeError(
                f"expected a number in [{minimum:g}, {maximum:g}], got {text}"
            )
        return value

    parse.__name__ = f"number in [{minimum:g}, {maximum:g}]"
    return parse


def available_memory() -> int | None:
    """Bytes of memory the system can give a process now (Linux's MemAvailable), or None."""
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _bounded_int(text: str, minimum: int, what: str, maximum: int | None = None) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    return value


def check_output_folder(output: str | os.PathLike) -> Path:
    """The output folder, created if needed; a ``ValueError`` naming the path when it is a file
    or cannot be written. Commands call it before they load a model, so a bad ``-o`` fails in a
    second, not after the work."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"{output}: exists and is not a folder; choose another -o/--output")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{output}: cannot create the output folder ({err.strerror})") from None
    if not os.access(output, os.W_OK | os.X_OK):
        raise ValueError(f"{output}: the output folder is not writable")
    return output
