"""Atomic file writes: a file is either its old self or completely new, never half-written.

Every output of the toolkit (results table, summaries, checkpoints, exported models, shipped
weights, contact sheets) goes through :func:`atomic_path`: the content is written to a temporary
file in the target's folder, which is renamed over the target only once complete. A failure
(full disk, read-only folder, kill) leaves the previous file untouched and no temporary file
behind; filesystem errors come out as :class:`OutputError` naming the target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(OSError):
    """An output file or folder cannot be written (permissions, read-only, full disk, ...)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_dir(folder: Path | str) -> Path:
    """Create ``folder`` (and parents); an :class:`OutputError` naming it if that fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create folder {folder}: {err.strerror or err}") from err
    return folder


@contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; renamed over ``path`` on success.

    The temporary file sits in ``path``'s folder (so the rename is atomic) and gets the
    permissions a plain ``open()`` would give (``mkstemp`` makes it private). ``suffix`` keeps
    an extension that a writer insists on (``.onnx``, ``.png``).
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
