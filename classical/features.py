"""LOMO features of a dataset split, streamed to a cached float32 memmap.

``extract_split(records, cache_dir, size=..., params=...)`` returns an (n, d) float32 memmap of the
LOMO features of ``records`` (in their order). The cache entry ``<cache_dir>/<key>/`` holds
``features.f32`` (raw float32, row-major) and ``meta.json``; the key hashes the LOMO parameters,
the image size, a feature-format version and the file list (paths, sizes and modification
times), so a changed image, file list or parameter means a new entry and an unchanged one is
reused in milliseconds.

Writing is atomic: features are streamed chunk by chunk (with a tqdm bar) into a temporary
folder next to the entry, which is renamed into place only when complete. An interrupted run
leaves no entry behind, and two processes extracting the same entry at once both end up reading
one complete copy. The temporary folder's name holds the writer's host and process id
(``.tmp-<key>-<host>-pid<pid>-XXXXXXXX``): a run killed outright (``kill -9``) leaves it behind,
and the next extraction into the same cache removes it as soon as that process is gone, without
ever touching a folder that a live process is still writing. Temporary folders without an owner
on this host (from older versions, or from another machine sharing the cache) are removed once
older than :data:`STALE_SECONDS`. The file is reserved on disk before streaming, so a full disk
(and any other write error) is an :class:`~data.io.OutputError` naming the entry.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from classical.lomo import DEFAULT_PARAMS, layout, lomo
from data.images import load_image
from data.io import OutputError
from data.layouts import Record

#: Bump when the feature computation changes in a way the parameters do not capture.
FEATURE_VERSION = 2
#: Images decoded and described per chunk (bounds memory: ~9 MB of pixels at 128x48).
CHUNK = 512
#: Temporary folders without an owner on this host older than this (seconds) are considered
#: abandoned and removed (those of this host are removed as soon as their process is gone).
STALE_SECONDS = 24 * 3600
#: A temporary folder's name: the entry's key, then its writer's host and process id.
_OWNED_TMP = re.compile(r"\.tmp-[0-9a-f]+-(?P<host>[A-Za-z0-9._]+)-pid(?P<pid>[0-9]+)-[a-z0-9_]{8}")

#: The files of a cache entry: raw float32 features (row-major) and their description.
FEATURES_FILE = "features.f32"
META_FILE = "meta.json"

_LAYOUT_KEYS = ("num_scales", "block_size", "block_step", "hsv_bins", "radii")


def _describe(value) -> object:
    """JSON-able, stable description of a parameter value (callables by qualified name)."""
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, tuple | list):
        return [_describe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def lomo_params(params: dict | None = None) -> dict:
    """The full LOMO parameter set (defaults filled in), without ``dtype`` (always float32)."""
    params = dict(params or {})
    params.pop("dtype", None)
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise ValueError(f"unknown LOMO parameters: {sorted(unknown)}")
    return {**DEFAULT_PARAMS, **params}


def cache_key(records: Sequence[Record], size: tuple[int, int], params: dict) -> str:
    """Hash of (format version, image size, LOMO parameters, file paths + sizes + mtimes)."""
    digest = hashlib.sha256()
    header = {
        "version": FEATURE_VERSION,
        "size": list(size),
        "params": {k: _describe(v) for k, v in sorted(params.items())},
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for record in records:
        path = Path(record.path)
        try:
            stat = path.stat()
        except OSError as err:
            raise FileNotFoundError(f"image file not found: {path}") from err
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _open(folder: Path, shape: tuple[int, int]) -> np.memmap | None:
    """The complete cache entry in ``folder`` as a read-only memmap, or None if it is not one."""
    meta_path = folder / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    data = folder / FEATURES_FILE
    if tuple(meta.get("shape", ())) != shape or not data.is_file():
        return None
    if data.stat().st_size != shape[0] * shape[1] * 4:
        return None
    return np.memmap(data, dtype=np.float32, mode="r", shape=shape)


def _host() -> str:
    """This machine's name as written in temporary folder names (``-`` and others as ``_``)."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def _tmp_prefix(key: str) -> str:
    """``.tmp-<key>-<host>-pid<pid>-``: the temporary folder names the process writing it."""
    return f".tmp-{key}-{_host()}-pid{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (True when that cannot be told)."""
    if os.name != "posix" or pid <= 0:
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is another user's
        return True
    return True


def _abandoned(tmp: Path, now: float) -> bool:
    """No live process is writing ``tmp``: its owner on this host is gone, or, without an owner
    on this host, it is older than :data:`STALE_SECONDS`."""
    owner = _OWNED_TMP.fullmatch(tmp.name)
    if owner is not None and owner["host"] == _host():
        return not _process_alive(int(owner["pid"]))
    return now - tmp.stat().st_mtime > STALE_SECONDS


def _clean_stale(cache_dir: Path) -> None:
    """Remove the temporary folders that interrupted runs left behind (see :func:`_abandoned`)."""
    now = time.time()
    for tmp in cache_dir.glob(".tmp-*"):
        try:
            if tmp.is_dir() and _abandoned(tmp, now):
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


@contextmanager
def _writing(entry: Path) -> Iterator[None]:
    """Filesystem errors while writing the cache entry ``entry`` as one :class:`OutputError`."""
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(
            f"cannot write the LOMO cache entry {entry}: {err.strerror or err}"
        ) from err


def _allocate(path: Path, shape: tuple[int, int]) -> np.memmap:
    """A zeroed float32 file of ``shape``, mapped for writing, with its disk blocks reserved
    first: a full disk is an error now, not a crash (SIGBUS) half-way through the memmap."""
    nbytes = shape[0] * shape[1] * 4
    with open(path, "wb") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, nbytes)
        except AttributeError:  # not POSIX
            handle.truncate(nbytes)
        except OSError as err:
            if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            handle.truncate(nbytes)  # a filesystem without fallocate
    return np.memmap(path, dtype=np.float32, mode="r+", shape=shape)


def _stream_features(
    out: np.memmap,
    records: Sequence[Record],
    size: tuple[int, int],
    params: dict,
    chunk: int,
    loader: Callable[[Path, tuple[int, int]], np.ndarray],
    desc: str,
    progress: bool,
) -> float:
    """Decode and describe ``records`` chunk by chunk into ``out``; returns seconds.

    Only one chunk of images is in memory at a time; the features go straight to the memmap.
    """
    start_time = time.perf_counter()
    with tqdm(total=len(records), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(records), chunk):
            batch = records[start : start + chunk]
            images = np.stack([loader(r.path, size) for r in batch])
            out[start : start + len(batch)] = lomo(images, dtype=np.float32, **params)
            bar.update(len(batch))
    return time.perf_counter() - start_time


def _write_meta(
    folder: Path,
    records: Sequence[Record],
    shape: tuple[int, int],
    size: tuple[int, int],
    params: dict,
    seconds: float,
) -> None:
    """``meta.json`` of an entry: what it holds and how it was made (read back by ``_open``)."""
    meta = {
        "shape": list(shape),
        "size": list(size),
        "params": {k: _describe(v) for k, v in params.items()},
        "version": FEATURE_VERSION,
        "count": len(records),
        "first": str(records[0].path),
        "last": str(records[-1].path),
        "seconds": round(seconds, 3),
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=2))


def _publish(tmp: Path, folder: Path, shape: tuple[int, int]) -> None:
    """Rename the complete entry ``tmp`` to ``folder``: atomic, so it appears whole or not at all.

    If another process finished the same entry first, its copy is kept; a broken entry in the
    way is replaced.
    """
    try:
        os.replace(tmp, folder)
    except OSError:
        if _open(folder, shape) is None:
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)


def _write_entry(
    cache_dir: Path,
    key: str,
    records: Sequence[Record],
    shape: tuple[int, int],
    size: tuple[int, int],
    params: dict,
    chunk: int,
    loader: Callable[[Path, tuple[int, int]], np.ndarray],
    desc: str,
    progress: bool,
) -> None:
    """Extract the entry ``cache_dir / key`` in a temporary folder next to it, then publish it.

    An interrupted run leaves no entry behind; a killed one leaves a ``.tmp-*`` folder naming
    its process, which a later run removes (:func:`_clean_stale`). Write errors (a full disk, a
    read-only cache) come out as an :class:`OutputError` naming the entry.
    """
    entry = cache_dir / key
    with _writing(entry):
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(key), dir=cache_dir))
    try:
        with _writing(entry):
            out = _allocate(tmp / FEATURES_FILE, shape)
        seconds = _stream_features(out, records, size, params, chunk, loader, desc, progress)
        with _writing(entry):
            out.flush()
            del out
            _write_meta(tmp, records, shape, size, params, seconds)
            _publish(tmp, entry, shape)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def extract_split(
    records: Sequence[Record],
    cache_dir: Path | str,
    *,
    size: tuple[int, int] = (128, 48),
    params: dict | None = None,
    desc: str = "LOMO",
    chunk: int = CHUNK,
    loader: Callable[[Path, tuple[int, int]], np.ndarray] = load_image,
    progress: bool = True,
) -> np.memmap:
    """LOMO features (n, d) float32 of ``records``, from or into the cache.

    Parameters
    ----------
    records : sequence of Record
        Images to describe (``record.path`` is read), in output order.
    cache_dir : path
        Root of the cache (e.g. ``runs/<dataset>/cache/lomo``).
    size : (height, width)
        Images are resized to this before LOMO (the paper's 128x48 by default).
    params : dict
        Keyword arguments of :func:`classical.lomo.lomo` (defaults filled in).
    desc, progress : str, bool
        tqdm label; set ``progress=False`` to hide the bar.
    chunk : int
        Images per LOMO call.
    loader : callable
        ``loader(path, size) -> (h, w, 3) uint8``; :func:`data.images.load_image` by default.

    Returns
    -------
    numpy.memmap
        Read-only (n, d) float32.
    """
    if len(records) == 0:
        raise ValueError(f"no images to describe ({desc})")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    params = lomo_params(params)
    cache_dir = Path(cache_dir)
    key = cache_key(records, size, params)
    folder = cache_dir / key
    dim = layout(size[0], size[1], **{k: params[k] for k in _LAYOUT_KEYS}).dim
    shape = (len(records), dim)
    if cache_dir.is_dir():
        _clean_stale(cache_dir)  # what killed runs left behind, whether or not we write
    cached = _open(folder, shape)
    if cached is not None:
        return cached

    _write_entry(cache_dir, key, records, shape, size, params, chunk, loader, desc, progress)
    opened = _open(folder, shape)
    if opened is None:  # pragma: no cover - only if the cache folder vanished under us
        raise RuntimeError(f"LOMO cache entry {folder} could not be read back")
    return opened
