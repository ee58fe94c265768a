"""One timing harness for every pipeline: milliseconds per query, the same way for all.

ms/query = (a) extracting the query's feature from its decoded image at batch size 1
(LOMO + XQDA projection, or CNN preprocessing + forward) + (b) matching it against the
precomputed gallery (distances + top-k ranking). Warm-up first, then per-query
``perf_counter_ns`` timings; medians and 90th percentiles of (a), (b) and (a)+(b) are reported,
with the thread count. Threads are set for torch, numba and the BLAS that numpy loaded
(OpenBLAS via its C API when available; otherwise say so).

The pipelines time with 1 thread by default (``--threads`` changes it). On the 2-vCPU machines
this project is developed on, single-image CNN inference with 2 OpenMP threads intermittently
stalls for about 0.9 s per call (measured: MobileNet v1 0.25 at 64x32 takes 3.5 ms on 1 thread
and 868 ms on 2), which would make the comparison meaningless; single-thread latency is also what
a server answering several queries at once gets per query.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class TimingResult:
    """Per-query timings in milliseconds (medians unless named p90)."""

    ms_extract: float
    ms_match: float
    ms_query: float
    ms_extract_p90: float
    ms_match_p90: float
    ms_query_p90: float
    num_queries: int
    threads: int

    def as_dict(self) -> dict:
        return asdict(self)


def _openblas_setter() -> Callable[[int], None] | None:
    """numpy's bundled OpenBLAS exposes openblas_set_num_threads (suffixed in numpy wheels)."""
    try:
        import numpy._core._multiarray_umath as umath  # numpy >= 2
    except ImportError:  # pragma: no cover - old numpy
        return None
    libs_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    candidates = [umath.__file__]
    if os.path.isdir(libs_dir):
        candidates += [os.path.join(libs_dir, f) for f in os.listdir(libs_dir) if "openblas" in f]
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                     "openblas_set_num_threads", "scipy_openblas_set_num_threads"):  # fmt: skip
            function = getattr(lib, name, None)
            if function is not None:
                return lambda n, f=function: f(ctypes.c_int(n))
    return None


_BLAS_SET = _openblas_setter()


def available_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def thread_limit(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` threads in torch, numba and numpy's BLAS (None = all cores)."""
    n = available_threads() if n is None else int(n)
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    import numba
    import torch

    old_torch, old_numba = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if _BLAS_SET is not None:
        _BLAS_SET(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old_torch)
        numba.set_num_threads(old_numba)
        if _BLAS_SET is not None:
            _BLAS_SET(available_threads())


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
    """
    if len(query_images) == 0:
        raise ValueError("query_images is empty")
    if num_queries < 1 or warmup < 0:
        raise ValueError(f"need num_queries >= 1 and warmup >= 0, got {num_queries}, {warmup}")
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


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int | None = None) -> dict:
    """What the numbers were measured on."""
    import numba
    import torch

    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "available_cores": available_threads(),
        "threads": threads if threads is not None else available_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "numba": numba.__version__,
        "blas_threads_controlled": _BLAS_SET is not None,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "platform": platform.platform(),
    }
