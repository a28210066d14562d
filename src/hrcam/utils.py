"""Small shared helpers: atomic file writes and logging setup."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_save_json",
    "atomic_torch_save",
    "atomic_write",
    "check_output_folder",
    "non_negative_int",
    "positive_int",
    "resolve_device",
]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it over ``path``.

    A crash or an exception inside the block leaves any earlier ``path`` untouched and no
    half-written file behind. ``mode`` is ``"wb"`` or ``"w"``.

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
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_save_json(obj: Any, path: str | os.PathLike, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=indent, sort_keys=False)
        f.write("\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (a crash keeps the previous checkpoint)."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def resolve_device(name: str) -> str:
    """``"auto"`` → ``"cuda"`` when available, else ``"cpu"``; ``"cuda"`` without a GPU raises."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    return name


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 1 (argparse names the flag in its error)."""
    return _bounded_int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An ``argparse`` type: an integer >= 0."""
    return _bounded_int(text, 0, "an integer >= 0")


def _bounded_int(text: str, minimum: int, what: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < minimum:
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
