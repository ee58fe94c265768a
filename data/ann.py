"""Approximate nearest-neighbour matching (FAISS) behind the exact matcher's interface.

:func:`build_matcher` returns an object with ``match(feature) -> indices`` (one query, best
first, what the timing harness calls) and ``search(queries, k) -> (indices, distances)`` (many
queries), whichever method :class:`MatchingConfig` names:

* ``"exact"`` (default): :class:`data.matching.GalleryIndex`, one GEMV + top-k;
* ``"faiss-flat"``: FAISS's brute-force ``IndexFlatL2`` (exact, FAISS's own kernels);
* ``"hnsw"``: a hierarchical navigable small-world graph (Malkov & Yashunin, 2018) over the
  raw vectors, ``IndexHNSWFlat``; ``hnsw_m`` links per node, ``hnsw_ef_construction`` /
  ``hnsw_ef_search`` candidate lists at build / query time;
* ``"ivfpq"``: an inverted file of ``ivf_nlist`` k-means cells (``ivf_nprobe`` visited per
  query) with product-quantised codes (Jégou et al., 2011), ``pq_m`` sub-quantisers of
  ``pq_bits`` bits, i.e. ``pq_m * pq_bits / 8`` bytes per item; ``refine`` > 0 re-ranks the
  ``refine * k`` best PQ candidates with exact distances (keeps the raw vectors in memory).

Distances are those of :mod:`data.matching`, so rankings are comparable: squared Euclidean, or
``1 - cosine`` (vectors normalised, then ``||a - b||^2 / 2``). XQDA's metric is served through
its Euclidean embedding (``XQDA.embedding``). FAISS's threads are its own OpenMP pool, set with
``threads`` at build time and by :func:`faiss_threads` around timings.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np

from data.matching import METRICS, GalleryIndex, topk_chunked

MATCHING_METHODS = ("exact", "faiss-flat", "hnsw", "ivfpq")


@dataclass(frozen=True)
class MatchingConfig:
    """Which matcher, and its parameters.

    Build parameters are FAISS's usual settings, lowered where the build cost called for it
    (HNSW ``M`` 16, ``efConstruction`` 40; IVF trained on at most 50k vectors). The search
    parameters are chosen on validation identities (``bench/bench_ann.py``: training
    identities of the large synthetic set, a 100k-item gallery grown with fitted distractors,
    the MobileNet v1 0.25 and LOMO+XQDA embeddings): the smallest value whose recall@10 against
    exact search reached 0.95 on both, ``hnsw_ef_search`` 32 (0.962 / 0.987); IVF-PQ's recall
    stalls below it (0.91 / 0.87 at ``nprobe`` 128 / 64) and reaches 0.968 at 128 with
    ``refine`` 4, hence ``ivf_nprobe`` 128. Recall at a fixed setting falls as the gallery grows
    (MobileNet, efSearch 32: recall@10 0.977 at 100k, 0.63 at 1M): raise ``hnsw_ef_search``
    for bigger galleries or for recall@50.
    ``ivf_nlist = 0`` means ``4 * sqrt(n)`` cells (capped so that each holds about 39 training
    vectors, FAISS's minimum for k-means); ``pq_m = 0`` means one sub-quantiser per 4
    dimensions (the vectors are zero-padded to a multiple of ``pq_m``, which changes no
    distance).
    """

    method: str = "exact"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 40
    hnsw_ef_search: int = 32
    ivf_nlist: int = 0
    ivf_nprobe: int = 128
    pq_m: int = 0
    pq_bits: int = 8
    refine: int = 0
    train_size: int = 50_000
    seed: int = 0

    def validate(self) -> MatchingConfig:
        """Raise a one-line ValueError naming the bad field; returns ``self``."""
        if self.method not in MATCHING_METHODS:
            raise ValueError(f"method must be one of {MATCHING_METHODS}, got {self.method!r}")
        positive = ("hnsw_m", "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe")
        for name in positive:
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("ivf_nlist", "pq_m", "refine", "seed"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if not _is_int(self.pq_bits) or not 1 <= self.pq_bits <= 16:
            raise ValueError(f"pq_bits must be an integer in 1..16, got {self.pq_bits!r}")
        if not _is_int(self.train_size) or self.train_size < 1:
            raise ValueError(f"train_size must be an integer >= 1, got {self.train_size!r}")
        return self

    def as_dict(self) -> dict:
        return asdict(self)


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@contextlib.contextmanager
def faiss_threads(n: int | None) -> Iterator[None]:
    """Run the block with FAISS's OpenMP pool at ``n`` threads (None: leave it), then restore."""
    import faiss

    old = faiss.omp_get_max_threads()
    if n is not None:
        if n < 1:
            raise ValueError(f"thread count must be >= 1, got {n}")
        faiss.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def auto_nlist(n: int, train_size: int) -> int:
    """``4 sqrt(n)`` inverted lists, at most ``min(n, train_size) // 39`` (and at least 1)."""
    return int(max(1, min(round(4 * np.sqrt(n)), min(n, train_size) // 39)))


def pq_layout(dim: int, pq_m: int) -> tuple[int, int]:
    """(sub-quantisers, padded dimension): ``pq_m`` (0: ``ceil(dim / 4)``) and the smallest
    multiple of it that holds ``dim``."""
    m = pq_m or -(-dim // 4)
    if m > dim:
        raise ValueError(f"pq_m must be <= the feature dimension {dim}, got {pq_m}")
    return m, -(-dim // m) * m


class FaissIndex:
    """A FAISS index over a gallery, answering ``match`` / ``search`` like the exact matcher.

    Parameters
    ----------
    gallery : ndarray (n, dim)
        Gallery features (float32 copies are made).
    k : int
        Neighbours returned by :meth:`match` (capped at the gallery size).
    metric : {"euclidean", "cosine"}
        As :func:`data.matching.topk_chunked`.
    config : MatchingConfig
        ``method`` one of ``"faiss-flat"``, ``"hnsw"``, ``"ivfpq"``.
    threads : int or None
        FAISS threads for building (None: FAISS's default, all cores). A multi-threaded HNSW
        build is not deterministic; one thread is.

    Attributes
    ----------
    build_seconds : float
        Wall time of training + adding the gallery.
    nbytes : int
        Size of the serialised index (vectors or codes, graph, centroids).
    """

    def __init__(
        self,
        gallery: np.ndarray,
        *,
        k: int = 50,
        metric: str = "euclidean",
        config: MatchingConfig | None = None,
        threads: int | None = None,
    ) -> None:
        config = (config or MatchingConfig(method="faiss-flat")).validate()
        if config.method == "exact":
            raise ValueError("FaissIndex serves faiss-flat, hnsw and ivfpq; use build_matcher")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        gallery = np.asarray(gallery)
        if gallery.ndim != 2 or gallery.shape[0] == 0:
            raise ValueError(f"gallery must be a non-empty (n, dim) array, got {gallery.shape}")
        if not _is_int(k) or k < 1:
            raise ValueError(f"k must be an integer >= 1, got {k!r}")
        self.config, self.metric = config, metric
        self.size, self.dim = gallery.shape
        self.k = min(int(k), self.size)
        self._pad = 0
        if config.method == "ivfpq":
            _, padded = pq_layout(self.dim, config.pq_m)
            self._pad = padded - self.dim
        vectors = self._prepare(gallery)
        with faiss_threads(threads):
            t0 = time.perf_counter()
            self.index = self._build(vectors)
            self.build_seconds = time.perf_counter() - t0
        self.nbytes = int(self._serialised_size())

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.metric == "cosine":
            x = _unit(x)
        if self._pad:
            x = np.pad(x, ((0, 0), (0, self._pad)))
        return np.ascontiguousarray(x, dtype=np.float32)

    def _build(self, vectors: np.ndarray):
        import faiss

        cfg, d = self.config, vectors.shape[1]
        if cfg.method == "faiss-flat":
            index = faiss.IndexFlatL2(d)
        elif cfg.method == "hnsw":
            index = faiss.IndexHNSWFlat(d, cfg.hnsw_m)
            index.hnsw.efConstruction = cfg.hnsw_ef_construction
            index.hnsw.efSearch = cfg.hnsw_ef_search
        else:
            index = self._ivfpq(vectors)
        index.add(vectors)
        return index

    def _ivfpq(self, vectors: np.ndarray):
        import faiss

        cfg, (n, d) = self.config, vectors.shape
        m, _ = pq_layout(self.dim, cfg.pq_m)
        n_train = min(n, cfg.train_size)
        if n_train < 2**cfg.pq_bits:
            raise ValueError(
                f"ivfpq with pq_bits={cfg.pq_bits} needs at least {2**cfg.pq_bits} training "
                f"vectors, the gallery has {n}: lower pq_bits or use hnsw / faiss-flat"
            )
        nlist = cfg.ivf_nlist or auto_nlist(n, n_train)
        if nlist > n_train:
            raise ValueError(f"ivf_nlist={nlist} exceeds the {n_train} training vectors")
        quantizer = faiss.IndexFlatL2(d)
        ivf = faiss.IndexIVFPQ(quantizer, d, nlist, m, cfg.pq_bits)
        ivf.nprobe = min(cfg.ivf_nprobe, nlist)
        ivf.cp.seed = cfg.seed
        ivf.pq.cp.seed = cfg.seed
        rng = np.random.default_rng(cfg.seed)
        sample = vectors if n_train == n else vectors[np.sort(rng.choice(n, n_train, False))]
        ivf.train(sample)
        self._quantizer = quantizer  # the IVF index does not own it: keep it alive
        if not cfg.refine:
            return ivf
        refined = faiss.IndexRefineFlat(ivf)
        refined.k_factor = float(cfg.refine)
        self._ivf = ivf
        return refined

    def set_search(self, *, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change the query-time parameters (HNSW ``efSearch``, IVF ``nprobe``) in place."""
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if ef_search is not None:
            if self.config.method != "hnsw":
                raise ValueError(f"ef_search applies to hnsw, not {self.config.method}")
            self.index.hnsw.efSearch = int(ef_search)
            self.config = replace(self.config, hnsw_ef_search=int(ef_search))
        if nprobe is not None:
            if self.config.method != "ivfpq":
                raise ValueError(f"nprobe applies to ivfpq, not {self.config.method}")
            ivf = self._ivf if self.config.refine else self.index
            ivf.nprobe = min(int(nprobe), ivf.nlist)
            self.config = replace(self.config, ivf_nprobe=int(nprobe))

    def _serialised_size(self) -> int:
        import faiss

        return faiss.serialize_index(self.index).nbytes

    def search(self, queries: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances) of the ``k`` (default ``self.k``) best items per query.

        Distances as in :mod:`data.matching`; an index that finds fewer than ``k`` items
        (IVF with few cells probed) pads with index -1 and distance inf.
        """
        k = self.k if k is None else k
        if not _is_int(k) or not 1 <= k <= self.size:
            raise ValueError(f"k must be in 1..{self.size} (the gallery size), got {k!r}")
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be (n, {self.dim}) features, got shape {q.shape}")
        dist, idx = self.index.search(self._prepare(q), k)
        dist = np.where(idx < 0, np.inf, dist)
        if self.metric == "cosine":
            dist = dist / 2.0  # ||a - b||^2 / 2 = 1 - cos for unit vectors
        return idx.astype(np.int64), dist

    def match(self, feature: np.ndarray) -> np.ndarray:
        """Indices of the ``k`` nearest gallery items for one feature vector, best first."""
        q = np.asarray(feature, dtype=np.float32).reshape(1, -1)
        return self.index.search(self._prepare(q), self.k)[1][0]


class ExactMatcher(GalleryIndex):
    """:class:`data.matching.GalleryIndex` with the :class:`FaissIndex` extras (``search``,
    ``nbytes``, ``build_seconds``)."""

    def __init__(self, gallery: np.ndarray, *, k: int = 50, metric: str = "euclidean") -> None:
        t0 = time.perf_counter()
        super().__init__(gallery, k=k, metric=metric)
        self.build_seconds = time.perf_counter() - t0
        self.size, self.dim = self.gallery.shape
        self.config = MatchingConfig()
        self.nbytes = int(self.gallery.nbytes + self.sq_norms.nbytes)

    def search(self, queries: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact (indices, distances) by :func:`data.matching.topk_chunked`."""
        return topk_chunked(queries, self.gallery, self.k if k is None else k, metric=self.metric)


def build_matcher(
    gallery: np.ndarray,
    *,
    k: int = 50,
    metric: str = "euclidean",
    config: MatchingConfig | None = None,
    threads: int | None = None,
) -> ExactMatcher | FaissIndex:
    """The matcher ``config.method`` names (exact GEMV by default) over ``gallery``."""
    config = (config or MatchingConfig()).validate()
    if config.method == "exact":
        return ExactMatcher(gallery, k=k, metric=metric)
    return FaissIndex(gallery, k=k, metric=metric, config=config, threads=threads)


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean fraction of each query's exact top ``k`` found in the approximate top ``k``."""
    approx, exact = np.asarray(approx), np.asarray(exact)
    if approx.ndim != 2 or exact.ndim != 2 or len(approx) != len(exact):
        raise ValueError(f"need two (n_query, k) arrays, got {approx.shape} and {exact.shape}")
    if not 1 <= k <= min(approx.shape[1], exact.shape[1]):
        raise ValueError(f"k must be in 1..{min(approx.shape[1], exact.shape[1])}, got {k}")
    hits = [len(np.intersect1d(a[:k], e[:k])) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits)) / k
