"""LOMO + XQDA end to end: ``make lomo-xqda`` (``python -m classical.pipeline``).

Two protocols, chosen with ``--protocol`` (default: the dataset's own):

``market`` (Market-1501, DukeMTMC-reID, generic, synthetic, ``cuhk03-new``)
    1. Load the dataset (the synthetic one is generated when missing).
    2. LOMO features of train / query / gallery, cached in ``runs/<dataset>/cache/lomo/``.
    3. XQDA fitted on the training set (identities and cameras: all cross-camera pairs).
    4. XQDA distances of every query to the gallery; CMC and mAP with both AP definitions
       (:func:`data.protocols.evaluate`).
``single-shot`` / ``multi-shot`` (Liao's benchmarks: ``viper``, ``cuhk01``, ``cuhk03``,
``cuhk03-detected``; see :mod:`data.benchmarks`)
    1. LOMO features of every image of the benchmark, cached as above.
    2. Per trial (10 random splits for VIPeR and CUHK01, the 20 published ones for CUHK03):
       XQDA fitted with ``fit_views`` on the training persons (gallery view = camera A, probe
       view = camera B, every image), then the test persons' camera-B probes ranked against
       their camera-A gallery: one image per person and camera (single-shot) or all of them, the
       distance between two persons being the mean of their image-pair distances (multi-shot).
    3. The CMC of each trial (:func:`data.protocols.two_view_cmc`, as Liao's ``EvalCMC``)
       and its mean over trials, printed at ranks 1/5/10/20 beside Liao's published rank-1
       (:data:`data.benchmarks.LIAO_LOMO_XQDA`). The splits are recorded in ``trials.json``.
    ``--protocol market`` on these benchmarks evaluates trial 0 (every image) with the
    Market-1501 code instead, as the deep pipeline does.

Then, for both: milliseconds per query (LOMO of one decoded query image, resize included, +
projection + matching against the projected gallery with top-k ranking, batch size 1, median
over at least 100 queries, cycled when there are fewer; one thread unless ``--threads`` says
otherwise; trial 0's probes and gallery for the two-view protocols), then
``runs/<dataset>/classical/<run name>/summary.json`` and ``xqda.npz`` (W, M; trial 0's for the
two-view protocols), a row of ``runs/<dataset>/results.csv`` and a one-screen summary.

The run name (:func:`run_name`, also the row's ``model``) holds every setting that changes the
numbers, so differently configured runs never overwrite each other, e.g.
``lomo_xqda_market_128x48_retinex-off_reg0.001_svd``.

    python -m classical.pipeline --dataset synthetic
    python -m classical.pipeline --dataset market1501 --data-root /data/Market-1501-v15.09.15
    python -m classical.pipeline --dataset cuhk01 --data-root /data/CUHK01   # multi-shot
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from classical.features import extract_split
from classical.lomo import lomo
from classical.xqda import XQDA
from compare.results import ResultRow, extra_json, upsert_rows
from compare.timing import TimingResult, machine_info, thread_limit, time_queries
from data import benchmarks
from data.images import ImageLoadError, load_image, resize
from data.io import atomic_write_bytes, atomic_write_text
from data.layouts import Record, ReidDataset, load_dataset
from data.matching import topk_from_distances
from data.paths import REPO_ROOT, run_dir_for
from data.protocols import evaluate, mean_cmc, set_distances, two_view_cmc

#: ``market``: the Market-1501 evaluation; the two others: Liao's two-view trials.
PROTOCOLS = ("market", *benchmarks.SHOTS)
#: Ranks printed and stored for the two-view protocols (as Liao's EvalCMC reports).
TRIAL_RANKS = (1, 5, 10, 20)


@dataclass
class ClassicalConfig:
    """Settings of one LOMO + XQDA run.

    Attributes
    ----------
    dataset, data_root : str
        Layout name and folder (``None``: the layout's default, for the synthetic data).
    size : (height, width)
        LOMO input size; 128x48 as in the paper (images are resized).
    retinex : bool
        MSRCR on the colour branch (the paper's setting; off by default because our
        approximation of it lowers accuracy, see :mod:`classical.retinex`).
    reg, n_components, solver
        XQDA parameters.
    protocol : str or None
        ``"market"``, ``"single-shot"`` or ``"multi-shot"``; None: the dataset's own (Liao's
        published protocol for the benchmarks: multi-shot for CUHK01, single-shot for VIPeR and
        CUHK03; ``market`` for every other layout).
    num_trials : int or None
        Two-view protocols: evaluate the first ``num_trials`` trials (None: all of them).
    split_seed : int
        Trial ``t`` of a benchmark is seeded with ``split_seed + t`` (random splits and
        single-shot picks); ``--protocol market`` on a benchmark uses trial 0.
    threads : int or None
        Threads for the per-query timing (None: all cores). Extraction and fitting use all cores.
    num_timed_queries, top_k : int
        Timed queries (cycled when the query set is smaller) and the ranking depth when timing.
    run_root : str or None
        Folder for this dataset's outputs (default ``runs/<dataset>``): the run goes to
        ``<run_root>/classical/<run name>``, the cache to ``<run_root>/cache/lomo`` and the row
        to ``<run_root>/results.csv``.
    progress : bool
        tqdm bars during extraction.
    """

    dataset: str = "synthetic"
    data_root: str | None = None
    size: tuple[int, int] = (128, 48)
    retinex: bool = False
    reg: float = 1e-3
    n_components: int | None = None
    solver: str = "svd"
    protocol: str | None = None
    num_trials: int | None = None
    split_seed: int = 0
    threads: int | None = 1
    num_timed_queries: int = 100
    top_k: int = 50
    run_root: str | None = None
    progress: bool = True


def resolve_protocol(dataset: str, protocol: str | None = None) -> str:
    """The protocol a run of ``dataset`` uses: ``protocol``, checked, or the dataset's default."""
    two_view = benchmarks.is_two_view(dataset)
    if protocol is None:
        return benchmarks.default_shots(dataset) if two_view else "market"
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol != "market" and not two_view:
        raise ValueError(
            f"protocol {protocol!r} needs one of Liao's two-view benchmarks "
            f"({', '.join(benchmarks.two_view_names())}); dataset {dataset!r} is evaluated "
            "with 'market'"
        )
    return protocol


def run_name(config: ClassicalConfig, protocol: str | None = None) -> str:
    """Run folder and results ``model`` key: every setting that changes the numbers.

    ``lomo_xqda_<protocol>[-<n>trials][-seed<s>]_<H>x<W>_retinex-<on|off>_reg<lambda>_<solver>
    [_dim<n>]``, e.g. ``lomo_xqda_market_128x48_retinex-off_reg0.001_svd``.
    """
    protocol = protocol or resolve_protocol(config.dataset, config.protocol)
    tag = protocol
    if protocol != "market" and config.num_trials is not None:
        tag += f"-{config.num_trials}trials"
    if config.split_seed:
        tag += f"-seed{config.split_seed}"
    parts = [
        "lomo_xqda",
        tag,
        f"{config.size[0]}x{config.size[1]}",
        f"retinex-{'on' if config.retinex else 'off'}",
        f"reg{config.reg:g}",
        config.solver,
    ]
    if config.n_components is not None:
        parts.append(f"dim{config.n_components}")
    return "_".join(parts)


def study_run_name(dataset: str = "synthetic") -> str:
    """The run (and ``model`` key) ``make tradeoff-plot`` uses: default settings, ``market``."""
    return run_name(ClassicalConfig(dataset=dataset), "market")


class XQDAMatcher:
    """Rank the projected gallery for projected queries with the XQDA metric.

    ``d(q, g) = g M g' - 2 q (g M)' + q M q'``: the gallery side ``g M`` and ``g M g'`` are
    precomputed, so a query costs one (n_gallery x r) matrix-vector product, then top-k. The
    evaluation uses :meth:`distance_matrix`, the same arithmetic as the timed :meth:`match`.

    Parameters
    ----------
    model : XQDA
        Fitted model (its ``metric_``).
    projected_gallery : ndarray (n_gallery, r)
        ``model.transform(gallery)``.
    k : int
        Ranking depth of :meth:`match`.
    dtype : numpy dtype
        Precision of the gallery-side matrix product (float32 halves its memory traffic).
    """

    def __init__(
        self,
        model: XQDA,
        projected_gallery: np.ndarray,
        k: int,
        dtype: type | np.dtype = np.float32,
    ) -> None:
        g = np.asarray(projected_gallery, dtype=np.float64)
        self.metric = model.metric_
        gallery_m = g @ self.metric
        self.gallery_norm = np.einsum("ij,ij->i", gallery_m, g)
        self.gallery_m = np.ascontiguousarray(gallery_m, dtype=dtype)
        self.k = min(k, g.shape[0])

    def distance_matrix(self, projected_queries: np.ndarray, block: int = 1024) -> np.ndarray:
        """(n_query, n_gallery) XQDA distances, by blocks of queries."""
        q_all = np.asarray(projected_queries)
        out = np.empty((q_all.shape[0], self.gallery_m.shape[0]), dtype=np.float64)
        for start in range(0, q_all.shape[0], block):
            q = q_all[start : start + block]
            q64 = q.astype(np.float64)
            q_norm = np.einsum("ij,ij->i", q64 @ self.metric, q64)
            cross = q.astype(self.gallery_m.dtype) @ self.gallery_m.T
            out[start : start + len(q)] = self.gallery_norm[None, :] - 2.0 * cross + q_norm[:, None]
        return out

    def distances(self, projected_query: np.ndarray) -> np.ndarray:
        """XQDA distances of one query to every gallery item."""
        q = np.asarray(projected_query).reshape(-1)
        q64 = q.astype(np.float64)
        cross = self.gallery_m @ q.astype(self.gallery_m.dtype)
        return self.gallery_norm - 2.0 * cross + q64 @ self.metric @ q64

    def match(self, projected_query: np.ndarray) -> np.ndarray:
        """Indices of the ``k`` nearest gallery items, best first."""
        return topk_from_distances(self.distances(projected_query)[None, :], self.k)[0][0]


def _save_model(path: Path, model: XQDA, config: ClassicalConfig) -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        components=model.components_,
        metric=model.metric_,
        spectrum=model.spectrum_,
        size=np.array(config.size),
        retinex=np.array(config.retinex),
        reg=np.array(config.reg),
    )
    atomic_write_bytes(path, buffer.getvalue())


def _relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _check_config(config: ClassicalConfig, protocol: str) -> None:
    two_view = benchmarks.is_two_view(config.dataset)
    if config.num_trials is not None:
        if protocol == "market":
            raise ValueError("num_trials (--trials) applies to the two-view protocols only")
        if config.num_trials < 1:
            raise ValueError(f"num_trials must be >= 1, got {config.num_trials}")
    if config.split_seed and not two_view:
        raise ValueError(
            "split_seed (--split-seed) applies to the two-view benchmarks only, not "
            f"{config.dataset!r}"
        )


def run(config: ClassicalConfig) -> dict:
    """Run the classical pipeline; returns the summary (also written to ``summary.json``)."""
    start = time.perf_counter()
    protocol = resolve_protocol(config.dataset, config.protocol)
    _check_config(config, protocol)
    root = Path(config.run_root) if config.run_root else run_dir_for(config.dataset)
    name = run_name(config, protocol)
    out_dir = root / "classical" / name
    if protocol == "market":
        return _run_market(config, root, out_dir, name, start)
    return _run_trials(config, protocol, root, out_dir, name, start)


def _features(records: list[Record], cache: Path, config: ClassicalConfig, desc: str):
    return extract_split(
        records,
        cache,
        size=config.size,
        params={"retinex": config.retinex},
        desc=desc,
        progress=config.progress,
    )


def _labels(records: list[Record]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r.pid for r in records]), np.array([r.camid for r in records])


def _time(
    config: ClassicalConfig, model: XQDA, queries: list[Record], matcher: XQDAMatcher
) -> TimingResult:
    """Per-query latency: decoded query image -> LOMO -> projection -> XQDA ranking."""
    components = np.ascontiguousarray(model.components_, dtype=np.float32)
    n_images = min(len(queries), config.num_timed_queries)
    query_images = [load_image(r.path) for r in queries[:n_images]]

    def extract_one(image: np.ndarray) -> np.ndarray:
        feature = lomo(resize(image, config.size), retinex=config.retinex, dtype=np.float32)
        return feature @ components

    with thread_limit(None):  # compile/warm the kernels outside the timed region
        extract_one(query_images[0])
    return time_queries(
        extract_one,
        matcher.match,
        query_images,
        num_queries=max(100, config.num_timed_queries),
        threads=config.threads,
    )


def _market_dataset(config: ClassicalConfig) -> ReidDataset:
    if benchmarks.is_two_view(config.dataset):
        bench = benchmarks.load_benchmark(
            config.dataset, config.data_root, num_trials=1, seed=config.split_seed
        )
        return bench.trial_dataset(0, "multi-shot")
    return load_dataset(config.dataset, config.data_root)


def _run_market(
    config: ClassicalConfig, root: Path, out_dir: Path, name: str, start: float
) -> dict:
    dataset = _market_dataset(config)
    print(dataset.summary())
    for split in ("train", "query", "gallery"):
        if not getattr(dataset, split):
            raise ValueError(f"dataset {config.dataset!r} has no {split} images")
    cache = root / "cache" / "lomo"
    out_dir.mkdir(parents=True, exist_ok=True)

    seconds = {}
    t0 = time.perf_counter()
    feats = {
        split: _features(getattr(dataset, split), cache, config, f"LOMO {split}")
        for split in ("train", "query", "gallery")
    }
    seconds["features"] = time.perf_counter() - t0

    labels = {split: _labels(getattr(dataset, split)) for split in ("train", "query", "gallery")}
    t0 = time.perf_counter()
    model = XQDA(reg=config.reg, n_components=config.n_components, solver=config.solver)
    model.fit(feats["train"], *labels["train"])
    seconds["fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # float32 projection, as in the timed per-query path below (same numbers measured as timed).
    q_proj = model.transform(feats["query"], dtype=np.float32)
    g_proj = model.transform(feats["gallery"], dtype=np.float32)
    matcher = XQDAMatcher(model, g_proj, config.top_k)
    dist = matcher.distance_matrix(q_proj)
    seconds["distances"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    (q_ids, q_cams), (g_ids, g_cams) = labels["query"], labels["gallery"]
    official = evaluate(dist, q_ids, g_ids, q_cams, g_cams, ap="official")
    torchreid = evaluate(dist, q_ids, g_ids, q_cams, g_cams, ap="torchreid")
    seconds["evaluation"] = time.perf_counter() - t0

    timing = _time(config, model, dataset.query, matcher)
    _save_model(out_dir / "xqda.npz", model, config)
    seconds["total"] = time.perf_counter() - start

    feature_dim = int(feats["train"].shape[1])
    xqda_dim = int(model.n_components_)
    summary = {
        "dataset": config.dataset,
        "protocol": "market",
        "run_name": name,
        "config": asdict(config),
        "rank1": _rank(official.cmc, 1),
        "rank5": _rank(official.cmc, 5),
        "rank10": _rank(official.cmc, 10),
        "mAP": official.mAP,
        "mAP_torchreid": torchreid.mAP,
        "cmc": [float(v) for v in official.cmc[:20]],
        "num_queries": official.num_queries,
        "num_valid_queries": official.num_valid_queries,
        "num_train": len(dataset.train),
        "num_train_ids": dataset.num_train_pids,
        "num_train_cams": dataset.num_train_cams,
        "num_gallery": len(dataset.gallery),
        "feature_dim": feature_dim,
        "xqda_dim": xqda_dim,
        "xqda_qr_reduced": bool(model.qr_reduced_),
        "xqda_top_spectrum": [float(v) for v in model.spectrum_[:10]],
        "xqda_intra_pairs": model.n_intra_pairs_,
        "xqda_extra_pairs": model.n_extra_pairs_,
        "metric_eigenvalues_clipped": int(model.n_clipped_),
        "seconds": seconds,
        "xqda_fit_seconds": model.fit_seconds_,
        "xqda_reduction": model.reduction_,
        "timing": timing.as_dict(),
        "machine": machine_info(timing.threads),
    }
    summary = json.loads(json.dumps(summary, default=_json_default))
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    row = _row(
        config,
        name,
        model,
        timing,
        out_dir,
        ranks=(summary["rank1"], summary["rank5"], summary["rank10"]),
        maps=(official.mAP, torchreid.mAP),
        extra={"protocol": "market"},
    )
    upsert_rows(root / "results.csv", [row])
    _print_summary(summary, out_dir)
    return summary


def _run_trials(
    config: ClassicalConfig, protocol: str, root: Path, out_dir: Path, name: str, start: float
) -> dict:
    bench = benchmarks.load_benchmark(
        config.dataset, config.data_root, num_trials=config.num_trials, seed=config.split_seed
    )
    print(
        f"{bench.name} at {bench.root}: {len(bench.persons)} persons, {bench.num_images} images; "
        f"{bench.split}; {protocol}"
    )
    cache = root / "cache" / "lomo"
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = {"fit": 0.0, "distances": 0.0}
    t0 = time.perf_counter()
    records = bench.records()
    feats = _features(records, cache, config, f"LOMO {bench.name}")
    seconds["features"] = time.perf_counter() - t0
    row_of = {r.path: i for i, r in enumerate(records)}

    def rows(recs: list[Record]) -> np.ndarray:
        return np.asarray(feats[np.array([row_of[r.path] for r in recs], dtype=np.int64)])

    curves, per_trial, splits = [], [], []
    first = None
    for trial in bench.trials:
        train = bench.train_images(trial)
        view_a = [r for r in train if r.camid == benchmarks.CAMERA_A]
        view_b = [r for r in train if r.camid == benchmarks.CAMERA_B]
        t0 = time.perf_counter()
        model = XQDA(reg=config.reg, n_components=config.n_components, solver=config.solver)
        model.fit_views(rows(view_a), rows(view_b), _labels(view_a)[0], _labels(view_b)[0])
        fit_seconds = time.perf_counter() - t0
        seconds["fit"] += fit_seconds

        t0 = time.perf_counter()
        probes, gallery = bench.test_images(trial, protocol)
        q_proj = model.transform(rows(probes), dtype=np.float32)
        g_proj = model.transform(rows(gallery), dtype=np.float32)
        matcher = XQDAMatcher(model, g_proj, config.top_k)
        dist = matcher.distance_matrix(q_proj)
        q_ids, g_ids = _labels(probes)[0], _labels(gallery)[0]
        if protocol == "multi-shot":
            dist, q_ids, g_ids = set_distances(dist, q_ids, g_ids)
        cmc = two_view_cmc(dist, q_ids, g_ids)
        seconds["distances"] += time.perf_counter() - t0
        curves.append(cmc)
        per_trial.append(
            {
                "index": trial.index,
                "seed": trial.seed,
                "num_train_persons": len(trial.train_pids),
                "num_test_persons": len(trial.test_pids),
                "num_train_images": len(train),
                "num_probe_images": len(probes),
                "num_gallery_images": len(gallery),
                **{f"rank{k}": _rank(cmc, k) for k in TRIAL_RANKS},
                "xqda_dim": int(model.n_components_),
                "fit_seconds": fit_seconds,
            }
        )
        split = trial.as_dict()
        if protocol == "single-shot":
            split["probe_images"] = [_in_root(r.path, bench.root) for r in probes]
            split["gallery_images"] = [_in_root(r.path, bench.root) for r in gallery]
        splits.append(split)
        if first is None:
            first = (model, matcher, probes)
        print(
            f"  trial {trial.index + 1}/{len(bench.trials)}: rank-1 {100 * cmc[0]:.1f}%  "
            f"({len(trial.test_pids)} test persons, XQDA {model.n_components_}-d, fit "
            f"{fit_seconds:.1f} s)",
            flush=True,
        )

    mean, std = mean_cmc(curves)
    model, matcher, probes = first
    timing = _time(config, model, probes, matcher)
    _save_model(out_dir / "xqda.npz", model, config)
    atomic_write_text(
        out_dir / "trials.json",
        json.dumps({"benchmark": bench.name, "split": bench.split, "trials": splits}, indent=1),
    )
    seconds["total"] = time.perf_counter() - start

    figure = benchmarks.published_figure(config.dataset, protocol)
    feature_dim = int(feats.shape[1])
    xqda_dim = int(model.n_components_)
    summary = {
        "dataset": config.dataset,
        "protocol": protocol,
        "run_name": name,
        "config": asdict(config),
        "benchmark": {
            "name": bench.name,
            "root": str(bench.root),
            "persons": len(bench.persons),
            "images": bench.num_images,
            "original_persons": bench.original_persons,
            "split": bench.split,
        },
        "num_trials": len(curves),
        **{f"rank{k}": _rank(mean, k) for k in TRIAL_RANKS},
        "rank1_std": float(std[0]),
        "cmc": [float(v) for v in mean[:50]],
        "cmc_std": [float(v) for v in std[:50]],
        "published": None
        if figure is None
        else {
            "rank1": figure.rank1,
            "source": figure.source,
            "comparable": len(bench.persons) == figure.persons,
        },
        "trials": per_trial,
        "feature_dim": feature_dim,
        "xqda_dim": xqda_dim,
        "xqda_dim_mean": float(np.mean([t["xqda_dim"] for t in per_trial])),
        "metric_eigenvalues_clipped": int(model.n_clipped_),
        "seconds": seconds,
        "timing": timing.as_dict(),
        "timing_note": "trial 0: its probes against its gallery images, image by image",
        "machine": machine_info(timing.threads),
    }
    summary = json.loads(json.dumps(summary, default=_json_default))
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    row = _row(
        config,
        name,
        model,
        timing,
        out_dir,
        ranks=(summary["rank1"], summary["rank5"], summary["rank10"]),
        maps=(float("nan"), float("nan")),  # Liao's protocol reports the CMC only
        extra={
            "protocol": protocol,
            "trials": len(curves),
            "split_seed": config.split_seed,
            "rank20": 100 * summary["rank20"],
            "rank1_std": 100 * summary["rank1_std"],
            "published_rank1": None if figure is None else figure.rank1,
        },
    )
    upsert_rows(root / "results.csv", [row])
    _print_trials(summary, out_dir)
    return summary


def _row(
    config: ClassicalConfig,
    name: str,
    model: XQDA,
    timing: TimingResult,
    out_dir: Path,
    *,
    ranks: tuple[float, float, float],
    maps: tuple[float, float],
    extra: dict,
) -> ResultRow:
    feature_dim = int(model.n_features_in_)
    xqda_dim = int(model.n_components_)
    return ResultRow(
        dataset=config.dataset,
        pipeline="classical",
        model=name,
        variant="classical",
        seed=0,
        input_size=f"{config.size[0]}x{config.size[1]}",
        params=int(model.components_.size + model.metric_.size),
        gflops=float("nan"),
        embedding_dim=xqda_dim,
        rank1=100 * ranks[0],
        rank5=100 * ranks[1],
        rank10=100 * ranks[2],
        mAP=100 * maps[0],
        mAP_torchreid=100 * maps[1],
        ms_extract=timing.ms_extract,
        ms_match=timing.ms_match,
        ms_query=timing.ms_query,
        ms_query_p90=timing.ms_query_p90,
        threads=timing.threads,
        device="cpu",
        run_dir=_relative(out_dir),
        extra=extra_json(
            retinex=config.retinex,
            feature_dim=feature_dim,
            xqda_dim=xqda_dim,
            reg=config.reg,
            solver=config.solver,
            n_components=config.n_components,
            projection_gflops=2 * feature_dim * xqda_dim / 1e9,
            gflops_note="LOMO is integer histogram work; FLOPs not meaningful",
            **extra,
        ),
    )


def _in_root(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _rank(cmc: np.ndarray, k: int) -> float:
    """CMC at rank k; the curve is capped at the gallery size and flat beyond it."""
    return float(cmc[min(k, len(cmc)) - 1])


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _timing_lines(s: dict, out_dir: Path) -> str:
    t = s["timing"]
    sec = s["seconds"]
    return (
        f"  ms/query {t['ms_query']:.2f} = LOMO+projection {t['ms_extract']:.2f} + matching "
        f"{t['ms_match']:.3f} (p90 {t['ms_query_p90']:.2f}; median of {t['num_queries']}, "
        f"{t['threads']} thread(s))\n"
        f"  features {sec['features']:.1f} s, fit {sec['fit']:.1f} s, total {sec['total']:.1f} s\n"
        f"  wrote {out_dir / 'summary.json'} and a row of {out_dir.parents[1] / 'results.csv'}"
    )


def _print_summary(s: dict, out_dir: Path) -> None:
    retinex = "on" if s["config"]["retinex"] else "off"
    print(
        f"\nLOMO + XQDA on {s['dataset']}: rank-1 {100 * s['rank1']:.1f}%  rank-5 "
        f"{100 * s['rank5']:.1f}%  rank-10 {100 * s['rank10']:.1f}%  mAP {100 * s['mAP']:.1f}% "
        f"(torchreid-style {100 * s['mAP_torchreid']:.1f}%)\n"
        f"  {s['num_queries']} queries ({s['num_valid_queries']} with a true match) against "
        f"{s['num_gallery']} gallery images; trained on {s['num_train']} images, "
        f"{s['num_train_ids']} ids, {s['num_train_cams']} cameras\n"
        f"  LOMO {s['feature_dim']}-d -> XQDA {s['xqda_dim']}-d "
        f"({s['metric_eigenvalues_clipped']} negative metric eigenvalues); Retinex {retinex}\n"
        + _timing_lines(s, out_dir)
    )


def published_line(s: dict) -> str:
    """Liao's figure for this benchmark and protocol, or why there is none to compare."""
    figure = s["published"]
    if figure is None:
        others = [
            f"{f.rank1:.2f}% {p}"
            for (b, p), f in benchmarks.LIAO_LOMO_XQDA.items()
            if b == benchmarks.canonical_name(s["dataset"])
        ]
        return "no published figure for this protocol" + (
            f" (Liao et al. CVPR 2015: {', '.join(others)})" if others else ""
        )
    text = f"Liao et al. CVPR 2015: {figure['rank1']:.2f}%"
    if not figure["comparable"]:
        bench = s["benchmark"]
        text += (
            f" (not comparable: {bench['persons']} persons here, the original release has "
            f"{bench['original_persons']})"
        )
    return text


def _print_trials(s: dict, out_dir: Path) -> None:
    first = s["trials"][0]
    retinex = "on" if s["config"]["retinex"] else "off"
    lines = [
        f"\nLOMO + XQDA on {s['dataset']}, {s['protocol']}: mean CMC over {s['num_trials']} "
        f"trial(s) of {first['num_test_persons']} test persons "
        f"({first['num_train_persons']} for training)",
    ]
    for k in TRIAL_RANKS:
        line = f"  rank-{k:<3d} {100 * s[f'rank{k}']:5.1f}%"
        if k == 1:
            line += f" +- {100 * s['rank1_std']:.1f}   {published_line(s)}"
        lines.append(line)
    lines.append("  per trial rank-1: " + " ".join(f"{100 * t['rank1']:.1f}" for t in s["trials"]))
    lines.append(
        f"  LOMO {s['feature_dim']}-d -> XQDA {s['xqda_dim_mean']:.0f}-d (mean over trials); "
        f"Retinex {retinex}; splits in {out_dir / 'trials.json'}"
    )
    print("\n".join(lines) + "\n" + _timing_lines(s, out_dir))


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 128x48, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LOMO + XQDA pipeline (make lomo-xqda)")
    parser.add_argument("--dataset", default="synthetic", help="layout name (default synthetic)")
    parser.add_argument("--data-root", default=None, help="dataset folder")
    parser.add_argument("--size", type=_size, default=(128, 48), help="LOMO input HxW (128x48)")
    parser.add_argument(
        "--retinex",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="MSRCR on the colour branch (default off: our approximation of the paper's Retinex "
        "lowers accuracy, see classical/retinex.py)",
    )
    parser.add_argument("--reg", type=float, default=1e-3, help="XQDA lambda (0.001)")
    parser.add_argument("--n-components", type=int, default=None, help="XQDA dimension (auto)")
    parser.add_argument("--solver", choices=("svd", "eig"), default="svd")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=None,
        help="market (Market-1501 evaluation), or Liao's single-shot / multi-shot trials on viper, "
        "cuhk01, cuhk03, cuhk03-detected (default: the dataset's own; multi-shot for cuhk01, "
        "single-shot for viper and cuhk03, market otherwise)",
    )
    parser.add_argument(
        "--trials", type=int, default=None, help="two-view protocols: first N trials (all)"
    )
    parser.add_argument(
        "--split-seed", type=int, default=0, help="benchmarks: trial t is seeded with this + t (0)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="threads for the per-query timing (default 1)"
    )
    parser.add_argument("--num-timed-queries", type=int, default=100)
    parser.add_argument(
        "--runs-dir", default=None, help="output folder for this dataset (default runs/<dataset>)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")
    args = parser.parse_args(argv)
    config = ClassicalConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        size=args.size,
        retinex=args.retinex,
        reg=args.reg,
        n_components=args.n_components,
        solver=args.solver,
        protocol=args.protocol,
        num_trials=args.trials,
        split_seed=args.split_seed,
        threads=args.threads,
        num_timed_queries=args.num_timed_queries,
        run_root=args.runs_dir,
        progress=not args.no_progress,
    )
    try:
        run(config)
    except (FileNotFoundError, ValueError, ImageLoadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
