"""Atomic file writes: a file is either its old self or completely new, never half-written.

Every output of the toolkit (results table, summaries, checkpoints, exported models, shipped
weights, contact sheets) goes through :func:`atomic_path`: the content is written to a temporary
file in the target's folder, which is renamed over the target only once complete. A failure
(full disk, read-only folder, exception) leaves the previous file untouched and no temporary
file behind; filesystem errors come out as :class:`OutputError` naming the target. Only a process
killed outright (``kill -9``, power cut) while writing leaves its temporary file: the writer holds
an advisory lock (``flock``) on its temporary while writing, so a temporary nobody holds is an
orphan, and :func:`remove_orphan_temporaries` removes it. Every :func:`atomic_path` does so for
its own target before writing, and commands call it for their run folders when they start, so
a later run, export, measurement or table rewrite removes what a killed one left, without ever
touching a concurrent writer's temporary. :func:`check_writable` fails before any work when an
output folder cannot be written.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: temporaries are judged by age instead of by their writer's lock
    fcntl = None

#: Without ``flock``, a temporary untouched this long (seconds) is taken for an orphan.
ORPHAN_AGE_WITHOUT_LOCKS = 24 * 3600


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
        raise OutputError(
            f"cannot write {folder} (the folder cannot be created): {err.strerror or err}"
        ) from err
    return folder


def check_writable(folder: Path | str) -> Path:
    """Fail now, before any work, if files could not be written into ``folder`` later.

    ``folder`` (or, while it does not exist yet, its nearest existing parent, where it would be
    created) must be a writable folder that takes a one-byte probe file (removed at once); an
    :class:`OutputError` naming ``folder`` otherwise. Nothing is created.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {folder}: {existing} is not writable")
    try:  # a real write: a full disk or a read-only mount passes the permission check
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=existing)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise OutputError(f"cannot write {folder}: {err.strerror or err}") from err
    return folder


def remove_orphan_temporaries(folder: Path | str, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` left in ``folder`` for ``names``.

    A process killed outright while writing ``<folder>/<name>`` leaves ``.<name>.XXXXXXXX``
    (``mkstemp``'s 8 random characters, then the writer's suffix, if any) behind. Only files
    named exactly so, and that no live writer holds (its ``flock``), are removed; every other
    file, and a missing folder, is left alone, so it is safe while other processes write the
    same names. Returns the files removed (one that cannot be removed stays, silently).
    """
    folder = Path(folder)
    patterns = [
        re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}(\.[A-Za-z0-9]+)?") for name in names
    ]
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no folder yet (or unreadable): nothing of ours to remove
        return []
    removed = []
    for entry in entries:
        if not any(p.fullmatch(entry.name) for p in patterns):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and _remove_if_orphan(Path(entry.path)):
                removed.append(folder / entry.name)
        except OSError:
            pass
    return removed


def _remove_if_orphan(path: Path) -> bool:
    """Unlink ``path`` unless a live writer holds its lock; True if it was removed."""
    if fcntl is None:
        if time.time() - path.stat().st_mtime < ORPHAN_AGE_WITHOUT_LOCKS:
            return False
        path.unlink()
        return True
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its writer is alive and writing
            return False
        path.unlink()
        return True
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; renamed over ``path`` on success.

    The temporary file sits in ``path``'s folder (so the rename is atomic) and gets the
    permissions a plain ``open()`` would give (``mkstemp`` makes it private). ``suffix`` keeps
    an extension that a writer insists on (``.onnx``, ``.png``).
    """
    path = Path(path)
    ensure_dir(path.parent)
    remove_orphan_temporaries(path.parent, [path.name])  # what a killed writer of it left
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from err
    tmp = Path(name)
    try:
        if fcntl is not None:  # held until the rename: marks the temporary as being written
            fcntl.flock(fd, fcntl.LOCK_EX)
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
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
