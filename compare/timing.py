"""One timing harness for every pipeline: milliseconds per query, the same way for all.

ms/query = (a) extracting the query's feature from its decoded image at batch size 1
(LOMO + XQDA projection, or CNN preprocessing + forward) + (b) matching it against the
precomputed gallery (distances + top-k ranking). Warm-up first, then per-query
``perf_counter_ns`` timings; medians and 90th percentiles of (a), (b) and (a)+(b) are reported,
with the thread count. Threads are set for torch, numba and the BLAS that numpy loaded
(OpenBLAS via its C API when available; otherwise say so).

CNN queries run on a chosen inference engine (:func:`time_engine_queries`; ``torch`` eager,
``onnxruntime`` or ``openvino``, see :mod:`deep.export`) with the same thread count as the rest
of the measurement; the engine's name and settings are part of the :class:`TimingResult`.

The pipelines time with 1 thread by default (``--threads`` changes it). On the 2-vCPU machines
this project is developed on, single-image CNN inference with 2 OpenMP threads intermittently
stalls for about 0.9 s per call (measured: MobileNet v1 0.25 at 64x32 takes 3.5 ms on 1 thread
and 868 ms on 2), which would make the comparison meaningless; single-thread latency is also what
a server answering several queries at once gets per query.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from data.ann import faiss_threads
from data.io import atomic_write_text
from data.matching import DEFAULT_BUDGET, ShardedGalleryIndex

if TYPE_CHECKING:  # pragma: no cover
    from deep.export import Engine

#: Gallery items each timed query ranks (top-k), in every pipeline.
TOP_K = 50


@dataclass(frozen=True)
class TimingResult:
    """Per-query timings in milliseconds (medians unless named p90).

    ``engine`` and ``engine_options`` say what ran the extraction (a CNN's inference engine and
    its settings, :func:`time_engine_queries`); empty for other pipelines.
    """

    ms_extract: float
    ms_match: float
    ms_query: float
    ms_extract_p90: float
    ms_match_p90: float
    ms_query_p90: float
    num_queries: int
    threads: int
    engine: str = ""
    engine_options: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _openblas_functions() -> tuple[Callable[[int], None] | None, Callable[[], int] | None]:
    """numpy's bundled OpenBLAS exposes (set, get)_num_threads (with a suffix in numpy wheels).

    threadpoolctl is not a dependency, so the C API is called through ctypes; when numpy uses
    another BLAS the functions are not found, BLAS threads are then not controlled and
    :func:`machine_info` says so (``blas_threads_controlled``). Subprocesses can still be limited
    with ``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS``, which only act at start-up.
    """
    try:
        import numpy._core._multiarray_umath as umath  # numpy >= 2
    except ImportError:  # pragma: no cover - old numpy
        return None, None
    libs_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    candidates = [umath.__file__]
    if os.path.isdir(libs_dir):
        candidates += [os.path.join(libs_dir, f) for f in os.listdir(libs_dir) if "openblas" in f]
    prefixes = ("scipy_openblas", "openblas")
    suffixes = ("64_", "")
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in prefixes:
            for suffix in suffixes:
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None:
                    getter_fn = None
                    if getter is not None:
                        getter.restype = ctypes.c_int
                        getter_fn = lambda g=getter: int(g())  # noqa: E731
                    return (lambda n, f=setter: f(ctypes.c_int(n))), getter_fn
    return None, None


_BLAS_SET, _BLAS_GET = _openblas_functions()


def available_threads() -> int:
    """CPU cores this process may run on (affinity mask), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - non-Linux


def blas_threads() -> int | None:
    """Threads numpy's OpenBLAS currently uses, or None when it cannot be queried."""
    return _BLAS_GET() if _BLAS_GET is not None else None


@contextlib.contextmanager
def thread_limit(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` threads in torch, numba, numpy's BLAS and FAISS (None = all
    cores).

    The previous settings are restored afterwards. Yields the thread count used.
    """
    n = available_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    import numba
    import torch

    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    old_blas = blas_threads() or available_threads()
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if _BLAS_SET is not None:
        _BLAS_SET(n)
    try:
        with faiss_threads(n):
            yield n
    finally:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)
        if _BLAS_SET is not None:
            _BLAS_SET(old_blas)


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))


def time_queries(
    extract_one: Callable[[np.ndarray], np.ndarray],
    match_one: Callable[[np.ndarray], np.ndarray],
    query_images: Sequence[np.ndarray],
    *,
    num_queries: int = 100,
    warmup: int = 10,
    threads: int | None = None,
    engine: str = "",
    engine_options: Mapping | None = None,
) -> TimingResult:
    """Time extraction and matching of single queries.

    Parameters
    ----------
    extract_one : callable
        ``image (H, W, 3) uint8 -> 1-D feature``, batch size 1.
    match_one : callable
        ``feature -> top-k gallery indices`` against the precomputed gallery.
    query_images : sequence of ndarray
        Decoded query images; cycled through if fewer than ``num_queries``.
    num_queries, warmup : int
        Timed queries (>= 1) and untimed warm-up calls.
    threads : int or None
        Thread count for the measurement (None = all cores).
    engine, engine_options : str, mapping
        What runs ``extract_one`` and its settings, recorded in the result. An engine whose
        options name a thread count (``"threads"``) other than ``threads`` is an error: every
        engine is timed with the thread count of the rest of the measurement.
    """
    if len(query_images) == 0:
        raise ValueError("query_images is empty")
    if num_queries < 1 or warmup < 0:
        raise ValueError(f"need num_queries >= 1 and warmup >= 0, got {num_queries}, {warmup}")
    options = dict(engine_options or {})
    wanted = available_threads() if threads is None else int(threads)
    if "threads" in options and int(options["threads"]) != wanted:
        raise ValueError(
            f"engine {engine or '?'} is set to {options['threads']} thread(s) but the timing uses "
            f"{wanted}: load it with threads={wanted}"
        )
    try:
        import torch

        inference = torch.inference_mode()
    except ImportError:  # pragma: no cover - torch is a dependency
        inference = contextlib.nullcontext()
    extract = np.empty(num_queries)
    match = np.empty(num_queries)
    with thread_limit(threads) as used, inference:
        for i in range(warmup):
            match_one(extract_one(query_images[i % len(query_images)]))
        for i in range(num_queries):
            image = query_images[i % len(query_images)]
            t0 = time.perf_counter_ns()
            feature = extract_one(image)
            t1 = time.perf_counter_ns()
            match_one(feature)
            t2 = time.perf_counter_ns()
            extract[i] = (t1 - t0) / 1e6
            match[i] = (t2 - t1) / 1e6
    total = extract + match
    return TimingResult(
        ms_extract=float(np.median(extract)),
        ms_match=float(np.median(match)),
        ms_query=float(np.median(total)),
        ms_extract_p90=_percentile(extract, 90),
        ms_match_p90=_percentile(match, 90),
        ms_query_p90=_percentile(total, 90),
        num_queries=num_queries,
        threads=used,
        engine=engine,
        engine_options=options,
    )


def time_engine_queries(
    engine: Engine,
    match_one: Callable[[np.ndarray], np.ndarray],
    query_images: Sequence[np.ndarray],
    *,
    num_queries: int = 100,
    warmup: int = 10,
    threads: int | None = 1,
) -> TimingResult:
    """:func:`time_queries` for a CNN on an inference engine (:func:`deep.export.load_engine`).

    Extraction = the engine's preprocessing of the decoded query image (resize + normalisation,
    the same code for every engine) + its forward pass at batch size 1. The engine must have
    been loaded with ``threads`` threads (torch's are set by :func:`thread_limit`); its name and
    settings are recorded in the result.
    """

    def extract_one(image: np.ndarray) -> np.ndarray:
        return engine(image)[0]

    return time_queries(
        extract_one,
        match_one,
        query_images,
        num_queries=num_queries,
        warmup=warmup,
        threads=threads,
        engine=engine.name,
        engine_options=engine.options,
    )


def batch_throughput(
    extract_batch: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    *,
    batch_size: int = 64,
    repeats: int = 3,
    threads: int | None = None,
) -> float:
    """Images per second of bulk extraction (gallery indexing), best of ``repeats``."""
    if len(images) == 0:
        raise ValueError("images is empty")
    batch = images[:batch_size]
    if len(batch) < batch_size:
        batch = np.concatenate([batch] * (batch_size // len(batch) + 1))[:batch_size]
    try:
        import torch

        inference = torch.inference_mode()
    except ImportError:  # pragma: no cover
        inference = contextlib.nullcontext()
    best = np.inf
    with thread_limit(threads), inference:
        extract_batch(batch)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            extract_batch(batch)
            best = min(best, time.perf_counter() - t0)
    return batch_size / best


@dataclass(frozen=True)
class ScalingPoint:
    """Matching cost of one query against a synthetic gallery of ``gallery_size`` x ``dim``."""

    dim: int
    gallery_size: int
    ms_match: float  # median
    ms_match_p90: float
    num_queries: int
    threads: int
    blocks: int  # gallery blocks of at most the byte budget (1 = the whole gallery in one GEMV)


def time_gallery_matching(
    dim: int,
    gallery_size: int,
    *,
    k: int = 50,
    threads: int | None = 1,
    budget: int = DEFAULT_BUDGET,
    target_seconds: float = 0.3,
    min_queries: int = 5,
    max_queries: int = 100,
    seed: int = 0,
) -> ScalingPoint:
    """Milliseconds to match one query against ``gallery_size`` random ``dim``-d features.

    The query goes through :func:`time_queries` (extraction is a no-op returning a precomputed
    feature), so the figure is the same (b) as in every pipeline's ms/query: one GEMV against
    the gallery plus the top-k selection. Galleries above ``budget`` bytes are matched block by
    block (:class:`~data.matching.ShardedGalleryIndex`), as an index that does not fit in
    memory would be; to keep the measurement itself memory-bounded and fast to set up, every
    full block is the same random array, which does not change the cost of a dense GEMV (it
    streams from main memory either way once a block exceeds the CPU caches).

    The number of timed queries adapts to the cost: about ``target_seconds`` in total, within
    ``min_queries``..``max_queries``.
    """
    if dim < 1 or gallery_size < 1:
        raise ValueError(f"dim and gallery_size must be >= 1, got {dim}, {gallery_size}")
    rng = np.random.default_rng(seed)
    rows = int(min(gallery_size, max(1, budget // (4 * dim))))
    block = rng.standard_normal((rows, dim), dtype=np.float32)
    full, rest = divmod(gallery_size, rows)
    blocks = [block] * full + ([block[:rest]] if rest else [])
    index = ShardedGalleryIndex(blocks, k=k)
    queries = list(rng.standard_normal((8, dim), dtype=np.float32))

    def no_extraction(feature: np.ndarray) -> np.ndarray:
        return feature

    with thread_limit(threads) as used:
        t0 = time.perf_counter()
        index.match(queries[0])  # also warms the caches and BLAS
        once = max(time.perf_counter() - t0, 1e-6)
        n = int(np.clip(target_seconds / once, min_queries, max_queries))
        result = time_queries(
            no_extraction, index.match, queries, num_queries=n, warmup=1, threads=used
        )
    return ScalingPoint(
        dim=int(dim),
        gallery_size=int(gallery_size),
        ms_match=result.ms_match,
        ms_match_p90=result.ms_match_p90,
        num_queries=n,
        threads=used,
        blocks=len(blocks),
    )


def gallery_scaling(
    dims: Sequence[int],
    sizes: Sequence[int],
    *,
    k: int = 50,
    threads: int | None = 1,
    budget: int = DEFAULT_BUDGET,
    cache_path: Path | str | None = None,
    refresh: bool = False,
    log: Callable[[str], None] | None = print,
) -> list[ScalingPoint]:
    """:func:`time_gallery_matching` for every (dim, size), cached in a JSON file.

    Cached entries are keyed by the machine (CPU model), numpy version, thread count, k, budget,
    dim and size, so a re-run on the same machine measures nothing; ``refresh`` re-measures the
    requested points (and keeps the other cached ones).
    """
    if not dims or not sizes:
        raise ValueError("gallery_scaling needs at least one dimension and one gallery size")
    threads = available_threads() if threads is None else int(threads)
    cache: dict = {}
    cache_path = Path(cache_path) if cache_path is not None else None
    if cache_path is not None and cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}  # a broken cache is only a cache: measure again
    machine = f"{cpu_model()}|numpy {np.__version__}|threads {threads}|k {k}|budget {budget}"
    points, changed = [], False
    for dim in sorted({int(d) for d in dims}):
        for size in sorted({int(n) for n in sizes}):
            key = f"{machine}|dim {dim}|n {size}"
            if key in cache and not refresh:
                try:
                    points.append(ScalingPoint(**cache[key]))
                    continue
                except TypeError:  # written by another version: measure again
                    pass
            point = time_gallery_matching(dim, size, k=k, threads=threads, budget=budget)
            if log is not None:
                log(f"  matching {dim:>6}-d x {size:>7,} gallery: {point.ms_match:9.3f} ms/query")
            cache[key] = asdict(point)
            points.append(point)
            changed = True
    if cache_path is not None and changed:
        atomic_write_text(cache_path, json.dumps(cache, indent=1, sort_keys=True))
    return points


def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical CPU (empty where the file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    cpus = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                entry[key.strip()] = value.strip()
        if entry:
            cpus.append(entry)
    return cpus


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (falls back to :func:`platform.processor`)."""
    for entry in _cpuinfo():
        if "model name" in entry:
            return entry["model name"]
    return platform.processor() or platform.machine()


def physical_cores() -> int | None:
    """Distinct (socket, core) pairs in /proc/cpuinfo, or None when it does not say."""
    pairs = {(e.get("physical id"), e.get("core id")) for e in _cpuinfo() if "core id" in e}
    return len(pairs) or None


def _version(package: str) -> str | None:
    """Installed version of ``package`` (None when it is not installed); imports nothing."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine_info(threads: int | None = None, device: str = "cpu") -> dict:
    """What the numbers were measured on: CPU model, cores, threads, library versions, device.

    ``onnxruntime`` / ``openvino`` are the inference engines' versions (None: not installed).
    """
    import numba
    import torch

    return {
        "cpu": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cores": os.cpu_count(),
        "available_cores": available_threads(),
        "threads": threads if threads is not None else available_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "numba": numba.__version__,
        "onnxruntime": _version("onnxruntime"),
        "openvino": _version("openvino"),
        "onnx": _version("onnx"),
        "blas_threads_controlled": _BLAS_SET is not None,
        "device": device,
        "cuda_available": bool(torch.cuda.is_available()),
        "platform": platform.platform(),
    }
