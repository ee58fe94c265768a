"""Which folders and files a command may write: its own, never a user's.

A command writes only into a run folder that is new, empty, or a run of its own kind; a run
folder is recognised by the marker file (:data:`MARKER_NAME`) the command wrote there when it
first wrote into it, or, for runs written before markers existed, by the files only that kind
of run holds (``legacy``). A single output file named by ``--out`` may replace only a file the
command wrote itself (recognised by the caller), unless the user passes ``--force``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from data.io import atomic_write_text

#: Written into a run folder by the command that owns it: ``{"kind": "<kind>"}``.
MARKER_NAME = ".reid-run.json"


class NotOurFolderError(ValueError):
    """An output folder holds files this command did not write (or another command's run)."""


def run_kind(folder: Path | str) -> str | None:
    """The kind recorded by ``folder``'s marker, or None (no marker, or an unreadable one)."""
    try:
        record = json.loads((Path(folder) / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    kind = record.get("kind") if isinstance(record, dict) else None
    return kind if isinstance(kind, str) else None


def check_run_folder(
    folder: Path | str, kind: str, legacy: Callable[[Path], bool] | None = None
) -> Path:
    """Raise :class:`NotOurFolderError` unless ``kind``'s outputs may go into ``folder``.

    Allowed: a folder that does not exist yet, an empty one, one whose marker names ``kind``,
    or (no marker) one that ``legacy`` recognises as an earlier run of ``kind``. Writes nothing.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotOurFolderError(f"cannot use {folder} as a run folder: it is not a folder")
    if not folder.exists() or not any(folder.iterdir()):
        return folder
    found = run_kind(folder)
    if found == kind or (found is None and legacy is not None and legacy(folder)):
        return folder
    what = f"a {found} run" if found else "files this command did not write"
    raise NotOurFolderError(
        f"refusing to write into {folder}: it holds {what}, not a {kind} run; "
        "pass a new or empty folder"
    )


def mark_run_folder(folder: Path | str, kind: str) -> None:
    """Record that ``folder`` is a run of ``kind`` (once; the folder must be checked first)."""
    folder = Path(folder)
    if run_kind(folder) != kind:
        atomic_write_text(folder / MARKER_NAME, json.dumps({"kind": kind}) + "\n")


def check_output_file(path: Path | str, ours: Callable[[Path], bool], force: bool) -> Path:
    """Raise :class:`NotOurFolderError` if ``path`` exists, ``ours`` does not recognise it as
    this command's output and ``force`` is off (``--out`` never replaces a user's file)."""
    path = Path(path)
    if path.is_dir():
        raise NotOurFolderError(f"cannot write {path}: it is a folder")
    if path.exists() and not force and not ours(path):
        raise NotOurFolderError(
            f"refusing to replace {path}: this command did not write it; "
            "pass --force to replace it, or another --out"
        )
    return path
