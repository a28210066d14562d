"""Whose folder ``-o`` is: hrcam writes only into a folder it made, an empty one, or its own
earlier output, and never overwrites a file it did not write.

A run marks its output with :data:`OUTPUT_MARKER` (a small JSON file) before it writes anything
else, so a later run (``--skip-existing``, ``--finish``) knows the folder is hrcam's, and a walk
of the inputs leaves hrcam outputs out.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..utils import atomic_save_json

__all__ = ["OUTPUT_MARKER", "OutputFolder", "claim_output_folder", "is_hrcam_output"]

#: The file that marks a folder as an ``hrcam explain`` output.
OUTPUT_MARKER = ".hrcam-explain.json"
_FORMAT = "hrcam-explain"
# What a run writes at the top of its folder (a shard writes summary.shard-I-of-N.json).
_OURS = ("index.html", "summary.json", "images")


@dataclass(frozen=True)
class OutputFolder:
    """The folder a run writes into; ``created`` when the run made it (so a run that fails
    before writing any image can remove it again, :meth:`release`)."""

    path: Path
    created: bool

    def release(self) -> None:
        """Remove the folder if this run created it and wrote nothing but its marker."""
        if not self.created or not self.path.is_dir():
            return
        if {p.name for p in self.path.iterdir()} <= {OUTPUT_MARKER}:
            shutil.rmtree(self.path, ignore_errors=True)


def is_hrcam_output(folder: Path) -> bool:
    """Whether ``folder`` holds an ``hrcam explain`` output: its marker, or (outputs written
    before the marker existed) a ``summary.json`` with hrcam's fields."""
    marker = folder / OUTPUT_MARKER
    if marker.is_file():
        try:
            return json.loads(marker.read_text()).get("format") == _FORMAT
        except (OSError, ValueError):
            return False
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and {"results", "state", "options"} <= summary.keys()


def claim_output_folder(output: str | os.PathLike, *, force: bool = False) -> OutputFolder:
    """Check ``output`` and make it this run's: created if missing, marked as hrcam's.

    Refused with a one-line ``ValueError``: a path that is a file or cannot be written; a
    folder that holds files and is not an hrcam output (unless ``force``); with ``force``, a
    folder where a file hrcam writes (``index.html``, ``summary.json``, ``images/``) exists
    already and is not hrcam's. Commands call it before they load a model.
    """
    path = Path(output)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path}: exists and is not a folder; choose another -o/--output")
    created = not path.exists()
    if not created and not is_hrcam_output(path):
        entries = sorted(p.name for p in path.iterdir())
        if entries and not force:
            shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
            raise ValueError(
                f"{path}: the folder holds files hrcam did not write ({shown}); explain into a "
                "new or empty folder, or pass --force to add hrcam's files beside them"
            )
        clash = [name for name in _OURS if (path / name).exists()]
        if clash:
            raise ValueError(
                f"{path}: {', '.join(clash)} exists and was not written by hrcam; hrcam does not "
                "overwrite it, even with --force: explain into another folder"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{path}: cannot create the output folder ({err.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: the output folder is not writable")
    if not (path / OUTPUT_MARKER).is_file():
        atomic_save_json({"format": _FORMAT, "version": 1}, path / OUTPUT_MARKER)
    return OutputFolder(path, created)
