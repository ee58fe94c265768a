"""LOMO features of a dataset split, streamed to a cached float32 memmap.

``extract_split(records, cache_dir, size=..., params=...)`` returns an (n, d) float32 memmap of the
LOMO features of ``records`` (in their order). The cache entry ``<cache_dir>/<key>/`` holds
``features.f32`` (raw float32, row-major) and ``meta.json``; the key hashes the LOMO parameters,
the image size, a feature-format version and the file list (paths, sizes and modification
times), so a changed image, file list or parameter means a new entry and an unchanged one is
reused in milliseconds.

Writing is atomic: features are streamed chunk by chunk (with a tqdm bar) into a temporary
folder next to the entry, which is renamed into place only when complete. An interrupted run
leaves no entry behind (its temporary folder is ignored and cleaned up by the next run), and two
processes extracting the same entry at once both end up reading one complete copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from classical.lomo import DEFAULT_PARAMS, layout, lomo
from data.images import load_image
from data.layouts import Record

#: Bump when the feature computation changes in a way the parameters do not capture.
FEATURE_VERSION = 2
#: Images decoded and described per chunk (bounds memory: ~9 MB of pixels at 128x48).
CHUNK = 512
#: Temporary folders older than this (seconds) are considered abandoned and removed.
STALE_SECONDS = 24 * 3600

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


def _clean_stale(cache_dir: Path) -> None:
    """Remove temporary folders left behind by interrupted runs (older than STALE_SECONDS)."""
    now = time.time()
    for tmp in cache_dir.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def _stream_features(
    path: Path,
    records: Sequence[Record],
    shape: tuple[int, int],
    size: tuple[int, int],
    params: dict,
    chunk: int,
    loader: Callable[[Path, tuple[int, int]], np.ndarray],
    desc: str,
    progress: bool,
) -> float:
    """Decode and describe ``records`` chunk by chunk into a float32 file; returns seconds.

    Only one chunk of images is in memory at a time; the features go straight to a memmap.
    """
    out = np.memmap(path, dtype=np.float32, mode="w+", shape=shape)
    start_time = time.perf_counter()
    with tqdm(total=len(records), desc=desc, unit="img", disable=not progress) as bar:
        for start in range(0, len(records), chunk):
            batch = records[start : start + chunk]
            images = np.stack([loader(r.path, size) for r in batch])
            out[start : start + len(batch)] = lomo(images, dtype=np.float32, **params)
            bar.update(len(batch))
    out.flush()
    del out
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

    An interrupted run leaves no entry behind, only a ``.tmp-*`` folder that a later run removes.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale(cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache_dir))
    try:
        seconds = _stream_features(
            tmp / FEATURES_FILE, records, shape, size, params, chunk, loader, desc, progress
        )
        _write_meta(tmp, records, shape, size, params, seconds)
        _publish(tmp, cache_dir / key, shape)
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
    cached = _open(folder, shape)
    if cached is not None:
        return cached

    _write_entry(cache_dir, key, records, shape, size, params, chunk, loader, desc, progress)
    opened = _open(folder, shape)
    if opened is None:  # pragma: no cover - only if the cache folder vanished under us
        raise RuntimeError(f"LOMO cache entry {folder} could not be read back")
    return opened
