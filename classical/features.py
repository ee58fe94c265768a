"""LOMO features of a whole dataset split, streamed to a cached float32 memmap.

Features are written chunk by chunk into ``<cache>/<key>/features.f32`` (a raw float32 memmap)
with a tqdm bar; the key hashes the LOMO parameters, the image size and the file list (paths,
sizes, modification times), so a changed image or parameter means a new cache entry, and an
unchanged one is reused in milliseconds. The metadata file is written last and atomically: a
folder without it is an interrupted extraction and is redone.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from classical.lomo import layout, lomo
from compare.results import atomic_write_text
from data.images import load_image
from data.layouts import Record

CHUNK = 256


def cache_key(records: Sequence[Record], size: tuple[int, int], params: dict) -> str:
    digest = hashlib.sha256()
    digest.update(
        json.dumps({"size": size, "params": params}, sort_keys=True, default=str).encode()
    )
    for r in records:
        stat = r.path.stat()
        digest.update(f"{r.path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def extract_split(
    records: Sequence[Record],
    cache_dir: Path,
    *,
    size: tuple[int, int] = (128, 48),
    params: dict | None = None,
    desc: str = "LOMO",
) -> np.ndarray:
    """LOMO features (n, d) float32 of ``records``, read from / written to ``cache_dir``.

    Returns a read-only memmap: large galleries never need to fit in memory twice.
    """
    params = dict(params or {})
    params.pop("dtype", None)
    if not records:
        raise ValueError(f"no records to extract ({desc})")
    key = cache_key(records, size, params)
    folder = Path(cache_dir) / key
    meta_path = folder / "meta.json"
    dim = layout(
        size[0],
        size[1],
        **{
            k: v
            for k, v in params.items()
            if k in ("num_scales", "block_size", "block_step", "hsv_bins", "radii")
        },
    ).dim
    shape = (len(records), dim)
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if tuple(meta["shape"]) == shape:
            return np.memmap(folder / "features.f32", dtype=np.float32, mode="r", shape=shape)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    out = np.memmap(folder / "features.f32", dtype=np.float32, mode="w+", shape=shape)
    with tqdm(total=len(records), desc=desc, unit="img", leave=False) as bar:
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            images = np.stack([load_image(r.path, size) for r in chunk])
            out[start : start + len(chunk)] = lomo(images, dtype=np.float32, **params)
            bar.update(len(chunk))
    out.flush()
    del out
    meta = {"shape": list(shape), "size": list(size), "params": params, "count": len(records)}
    atomic_write_text(meta_path, json.dumps(meta, indent=2, default=str))
    return np.memmap(folder / "features.f32", dtype=np.float32, mode="r", shape=shape)
