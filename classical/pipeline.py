"""LOMO + XQDA fitted and scored on the dataset's protocol: ``python -m classical.pipeline``.

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

Outputs: ``runs/<dataset>/classical/<run name>/summary.json`` (accuracy, dimensions, seconds)
and ``xqda.npz`` (W, M; trial 0's for the two-view protocols). :func:`run` returns a
:class:`FittedRun` whose :class:`LomoXqda` pipeline ``compare`` times query by query
(``make lomo-xqda`` = ``python -m compare.lomo_xqda``: this, then ms/query and a results row).

The run name (:func:`run_name`, also the results row's ``model``) holds every setting that
changes the numbers, so differently configured runs never overwrite each other, e.g.
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
from classical.xqda import XQDA, XQDAMatcher
from data import benchmarks
from data.cli import entry_point, image_size, non_negative_int, positive_int
from data.images import resize
from data.io import (
    atomic_write_bytes,
    atomic_write_text,
    remove_orphan_temporaries,
)
from data.layouts import Record, ReidDataset, check_training_set, load_dataset, record_arrays
from data.ownership import check_run_folder, mark_run_folder
from data.protocols import evaluate, mean_cmc, set_distances, two_view_cmc
from data.runs import RunsLayout, add_runs_dir_argument

#: ``market``: the Market-1501 evaluation; the two others: Liao's two-view trials.
PROTOCOLS = ("market", *benchmarks.SHOTS)
#: Ranks printed and stored for the two-view protocols (as Liao's EvalCMC reports).
TRIAL_RANKS = (1, 5, 10, 20)
SOLVERS = ("svd", "eig")
#: The files of a run folder (all written atomically, the folder created by the first of them).
RUN_FILES = ("xqda.npz", "trials.json", "summary.json")
#: The marker kind of a classical run folder (:mod:`data.ownership`).
RUN_KIND = "classical"


@dataclass
class ClassicalConfig:
    """Settings of one LOMO + XQDA run (every one is a flag of ``python -m classical.pipeline``).

    Attributes
    ----------
    dataset, data_root : str
        Layout name and folder (``None``: the layout's default, for the synthetic data).
    input_size : (height, width)
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
    runs_dir : str or None
        Root of the runs tree (:class:`data.runs.RunsLayout`; None: ``$REID_RUNS_DIR``, else
        ``runs/``): the run goes to ``<runs_dir>/<dataset>/classical/<run name>``, the cache to
        ``<runs_dir>/<dataset>/cache/lomo`` and the results row (``compare.lomo_xqda``) to
        ``<runs_dir>/<dataset>/results.csv``.
    out : str or None
        The run folder, as ``deep.train --out`` (default: the layout's classical run). A
        run elsewhere is an experiment: it never enters the results table.
    progress : bool
        tqdm bars during extraction.
    """

    dataset: str = "synthetic"
    data_root: str | None = None
    input_size: tuple[int, int] = (128, 48)
    retinex: bool = False
    reg: float = 1e-3
    n_components: int | None = None
    solver: str = "svd"
    protocol: str | None = None
    num_trials: int | None = None
    split_seed: int = 0
    runs_dir: str | None = None
    out: str | None = None
    progress: bool = True

    def validate(self) -> str:
        """Check every setting before any work; returns the protocol the run uses."""
        if not (self.reg > 0 and np.isfinite(self.reg)):
            raise ValueError(
                f"--reg must be a finite number > 0 (XQDA adds it to the intra-class covariance, "
                f"which is singular without it), got {self.reg}"
            )
        if self.n_components is not None and self.n_components < 1:
            raise ValueError(f"--n-components must be >= 1, got {self.n_components}")
        if self.solver not in SOLVERS:
            raise ValueError(f"--solver must be one of {SOLVERS}, got {self.solver!r}")
        if min(self.input_size) < 8:
            raise ValueError(f"--input-size (--size) must be at least 8x8, got {self.input_size}")
        protocol = resolve_protocol(self.dataset, self.protocol)
        if self.num_trials is not None:
            if protocol == "market":
                raise ValueError("--trials applies to the two-view protocols only")
            if self.num_trials < 1:
                raise ValueError(f"--trials must be >= 1, got {self.num_trials}")
        if self.split_seed and not benchmarks.is_two_view(self.dataset):
            raise ValueError(
                f"--split-seed applies to the two-view benchmarks only, not {self.dataset!r}"
            )
        if self.split_seed < 0:
            raise ValueError(f"--split-seed must be >= 0, got {self.split_seed}")
        return protocol

    def layout(self) -> RunsLayout:
        return RunsLayout.at(self.runs_dir)

    def run_dir(self, protocol: str | None = None) -> Path:
        """The run folder: ``out``, or the layout's classical run of this name."""
        if self.out:
            return Path(self.out)
        return self.layout().classical_run(self.dataset, run_name(self, protocol))

    def in_study_tree(self) -> bool:
        """Whether the run folder is one of the dataset's own (its row enters the table)."""
        layout = self.layout()
        return layout.holds(self.run_dir(), layout.classical_dir(self.dataset))


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
        f"{config.input_size[0]}x{config.input_size[1]}",
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


# ---------------------------------------------------------------------------------------------
# The pipeline: fit / extract / match
# ---------------------------------------------------------------------------------------------
class LomoXqda:
    """LOMO features + XQDA metric: the classical pipeline behind one small interface.

    ``fit`` learns XQDA from training images, ``extract`` turns one decoded image into its
    projected feature (the per-query path ``compare`` times), ``features`` does the same for
    many records through the LOMO cache, and ``matcher`` ranks a projected gallery.
    """

    def __init__(self, config: ClassicalConfig, cache_dir: Path) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self.model = XQDA(reg=config.reg, n_components=config.n_components, solver=config.solver)
        self.fit_seconds = 0.0

    def lomo(self, records: list[Record], desc: str) -> np.ndarray:
        """Cached LOMO features (n, d) float32 of ``records``."""
        return extract_split(
            records,
            self.cache_dir,
            size=self.config.input_size,
            params={"retinex": self.config.retinex},
            desc=desc,
            progress=self.config.progress,
        )

    def fit(self, features: np.ndarray, records: list[Record]) -> LomoXqda:
        """XQDA on the LOMO ``features`` of the training ``records`` (cross-camera pairs)."""
        ids, cams = record_arrays(records)
        t0 = time.perf_counter()
        self.model.fit(features, ids, cams=cams)
        self.fit_seconds = time.perf_counter() - t0
        self._components32 = np.ascontiguousarray(self.model.components_, dtype=np.float32)
        return self

    def fit_views(
        self, features_a: np.ndarray, view_a: list[Record], features_b: np.ndarray, view_b: list
    ) -> LomoXqda:
        """XQDA on two camera views (Liao's two-view benchmarks)."""
        t0 = time.perf_counter()
        self.model.fit_views(
            features_a, record_arrays(view_a)[0], features_b, record_arrays(view_b)[0]
        )
        self.fit_seconds = time.perf_counter() - t0
        self._components32 = np.ascontiguousarray(self.model.components_, dtype=np.float32)
        return self

    def project(self, features: np.ndarray) -> np.ndarray:
        # float32 projection, as in the timed per-query path (same numbers measured as timed)
        return self.model.transform(features, dtype=np.float32)

    def extract(self, image: np.ndarray) -> np.ndarray:
        """One decoded RGB image -> projected feature: resize, LOMO, XQDA projection."""
        feature = lomo(
            resize(image, self.config.input_size), retinex=self.config.retinex, dtype=np.float32
        )
        return feature @ self._components32

    def extract_batch(self, images: np.ndarray) -> np.ndarray:
        """Decoded RGB images (n, H, W, 3) -> projected features (n, dim): :meth:`extract` for
        many images at once (bulk gallery indexing)."""
        resized = np.stack([resize(image, self.config.input_size) for image in images])
        return lomo(resized, retinex=self.config.retinex, dtype=np.float32) @ self._components32

    @classmethod
    def with_projection(cls, config: ClassicalConfig, components: np.ndarray) -> LomoXqda:
        """An extractor only (no metric, no cache) through the projection ``components``
        (features x dims): timing extraction, whose cost depends only on the shapes."""
        pipeline = cls(config, cache_dir=Path())
        pipeline._components32 = np.ascontiguousarray(components, dtype=np.float32)
        return pipeline

    def matcher(self, projected_gallery: np.ndarray, k: int = 50) -> XQDAMatcher:
        """Ranks ``projected_gallery`` for a projected query (``.match``) or many
        (``.distance_matrix``) with the XQDA metric."""
        return XQDAMatcher(self.model, projected_gallery, k)

    def save(self, path: Path) -> None:
        """``xqda.npz``: W, M, the spectrum and the settings that produced them."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            components=self.model.components_,
            metric=self.model.metric_,
            spectrum=self.model.spectrum_,
            size=np.array(self.config.input_size),
            retinex=np.array(self.config.retinex),
            reg=np.array(self.config.reg),
        )
        atomic_write_bytes(path, buffer.getvalue())


@dataclass
class FittedRun:
    """A finished classical run: its summary, the fitted pipeline, and the split it was scored
    on (trial 0 for the two-view protocols), for ``compare`` to time query by query."""

    summary: dict
    pipeline: LomoXqda
    queries: list[Record]
    projected_gallery: np.ndarray
    out_dir: Path
    #: The Market-1501 evaluation's projected queries and gallery records (None for the
    #: two-view protocols), for ``compare`` to re-rank the whole split.
    projected_queries: np.ndarray | None = None
    gallery: list[Record] | None = None


def run(config: ClassicalConfig) -> FittedRun:
    """Fit and score the classical pipeline; writes ``summary.json`` and ``xqda.npz``."""
    start = time.perf_counter()
    protocol = config.validate()
    cache_dir = config.layout().lomo_cache(config.dataset)
    name = run_name(config, protocol)
    out_dir = config.run_dir(protocol)
    # what a run of this name killed while writing (kill -9) left behind; no folder is created
    # before the first output, so a run that fails before producing anything leaves none
    remove_orphan_temporaries(out_dir, RUN_FILES)
    check_run_folder(out_dir, RUN_KIND, legacy=_is_classical_run)
    if protocol == "market":
        fitted = _run_market(config, cache_dir, out_dir, name)
    else:
        fitted = _run_trials(config, protocol, cache_dir, out_dir, name)
    fitted.summary["seconds"]["total"] = time.perf_counter() - start
    write_summary(fitted)
    return fitted


def _is_classical_run(folder: Path) -> bool:
    """A run folder written before markers existed: XQDA weights and no CNN weights."""
    cnn = (folder / "model.pt").exists() or (folder / "checkpoint.pt").exists()
    return (folder / "xqda.npz").is_file() and not cnn


def write_summary(fitted: FittedRun) -> None:
    """(Re)write the run's ``summary.json``, atomically."""
    mark_run_folder(fitted.out_dir, RUN_KIND)
    summary = json.loads(json.dumps(fitted.summary, default=_json_default))
    atomic_write_text(fitted.out_dir / "summary.json", json.dumps(summary, indent=2))


# ---------------------------------------------------------------------------------------------
# Market-1501 protocol
# ---------------------------------------------------------------------------------------------
def _market_dataset(config: ClassicalConfig) -> ReidDataset:
    if benchmarks.is_two_view(config.dataset):
        bench = benchmarks.load_benchmark(
            config.dataset, config.data_root, num_trials=1, seed=config.split_seed
        )
        return bench.trial_dataset(0, "multi-shot")
    return load_dataset(config.dataset, config.data_root)


def _load_market(config: ClassicalConfig) -> ReidDataset:
    dataset = _market_dataset(config)
    print(dataset.summary())
    for split in ("train", "query", "gallery"):
        if not getattr(dataset, split):
            raise ValueError(f"dataset {config.dataset!r} has no {split} images")
    # XQDA learns from cross-camera pairs: refuse a set without any, warn on identities without
    check_training_set(dataset, needs_cross_camera_pairs=True)
    return dataset


def _run_market(config: ClassicalConfig, cache_dir: Path, out_dir: Path, name: str) -> FittedRun:
    dataset = _load_market(config)
    pipeline = LomoXqda(config, cache_dir)
    seconds = {}
    t0 = time.perf_counter()
    feats = {
        s: pipeline.lomo(getattr(dataset, s), f"LOMO {s}") for s in ("train", "query", "gallery")
    }
    seconds["features"] = time.perf_counter() - t0
    pipeline.fit(feats["train"], dataset.train)
    seconds["fit"] = pipeline.fit_seconds
    t0 = time.perf_counter()
    q_proj, g_proj = pipeline.project(feats["query"]), pipeline.project(feats["gallery"])
    dist = pipeline.matcher(g_proj).distance_matrix(q_proj)
    seconds["distances"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    (q_ids, q_cams), (g_ids, g_cams) = record_arrays(dataset.query), record_arrays(dataset.gallery)
    official = evaluate(dist, q_ids, g_ids, q_cams, g_cams, ap="official")
    torchreid = evaluate(dist, q_ids, g_ids, q_cams, g_cams, ap="torchreid")
    seconds["evaluation"] = time.perf_counter() - t0
    mark_run_folder(out_dir, RUN_KIND)  # before the first output: a killed run is still ours
    pipeline.save(out_dir / "xqda.npz")
    summary = {
        "dataset": config.dataset,
        "protocol": "market",
        "run_name": name,
        "config": asdict(config),
        "rank1": rank_at(official.cmc, 1),
        "rank5": rank_at(official.cmc, 5),
        "rank10": rank_at(official.cmc, 10),
        "mAP": official.mAP,
        "mAP_torchreid": torchreid.mAP,
        "cmc": [float(v) for v in official.cmc[:20]],
        "num_queries": official.num_queries,
        "num_valid_queries": official.num_valid_queries,
        "num_train": len(dataset.train),
        "num_train_ids": dataset.num_train_pids,
        "num_train_cams": dataset.num_train_cams,
        "num_gallery": len(dataset.gallery),
        "feature_dim": int(feats["train"].shape[1]),
        "seconds": seconds,
        **_xqda_facts(pipeline.model),
    }
    return FittedRun(summary, pipeline, dataset.query, g_proj, out_dir, q_proj, dataset.gallery)


def _xqda_facts(model: XQDA) -> dict:
    return {
        "xqda_dim": int(model.n_components_),
        "xqda_top_spectrum": [float(v) for v in model.spectrum_[:10]],
        "xqda_intra_pairs": model.n_intra_pairs_,
        "xqda_extra_pairs": model.n_extra_pairs_,
        "metric_eigenvalues_clipped": int(model.n_clipped_),
        "xqda_fit_seconds": model.fit_seconds_,
        "xqda_reduction": model.reduction_,
    }


# ---------------------------------------------------------------------------------------------
# Liao's two-view protocols
# ---------------------------------------------------------------------------------------------
@dataclass
class _TrialResult:
    cmc: np.ndarray
    record: dict  # per-trial numbers for summary.json
    split: dict  # the trial's split for trials.json
    pipeline: LomoXqda
    probes: list[Record]
    projected_gallery: np.ndarray
    distance_seconds: float


class _BenchmarkFeatures:
    """LOMO of every benchmark image, computed once; rows looked up by record."""

    def __init__(self, pipeline: LomoXqda, bench) -> None:
        records = bench.records()
        self.features = pipeline.lomo(records, f"LOMO {bench.name}")
        self._row = {r.path: i for i, r in enumerate(records)}

    def __call__(self, records: list[Record]) -> np.ndarray:
        index = np.array([self._row[r.path] for r in records], dtype=np.int64)
        return np.asarray(self.features[index])


def _run_trial(config, protocol, bench, trial, rows, cache_dir) -> _TrialResult:
    """Fit XQDA on one trial's training persons, score its test persons (two-view CMC)."""
    train = bench.train_images(trial)
    view_a = [r for r in train if r.camid == benchmarks.CAMERA_A]
    view_b = [r for r in train if r.camid == benchmarks.CAMERA_B]
    pipeline = LomoXqda(config, cache_dir).fit_views(rows(view_a), view_a, rows(view_b), view_b)
    t0 = time.perf_counter()
    probes, gallery = bench.test_images(trial, protocol)
    g_proj = pipeline.project(rows(gallery))
    dist = pipeline.matcher(g_proj).distance_matrix(pipeline.project(rows(probes)))
    q_ids, g_ids = record_arrays(probes)[0], record_arrays(gallery)[0]
    if protocol == "multi-shot":
        dist, q_ids, g_ids = set_distances(dist, q_ids, g_ids)
    cmc = two_view_cmc(dist, q_ids, g_ids)
    record = {
        "index": trial.index,
        "seed": trial.seed,
        "num_train_persons": len(trial.train_pids),
        "num_test_persons": len(trial.test_pids),
        "num_train_images": len(train),
        "num_probe_images": len(probes),
        "num_gallery_images": len(gallery),
        **{f"rank{k}": rank_at(cmc, k) for k in TRIAL_RANKS},
        "xqda_dim": int(pipeline.model.n_components_),
        "fit_seconds": pipeline.fit_seconds,
    }
    split = trial.as_dict()
    if protocol == "single-shot":
        split["probe_images"] = [_in_root(r.path, bench.root) for r in probes]
        split["gallery_images"] = [_in_root(r.path, bench.root) for r in gallery]
    seconds = time.perf_counter() - t0
    return _TrialResult(cmc, record, split, pipeline, probes, g_proj, seconds)


def _run_trials(
    config: ClassicalConfig, protocol: str, cache_dir: Path, out_dir: Path, name: str
) -> FittedRun:
    bench = benchmarks.load_benchmark(
        config.dataset, config.data_root, num_trials=config.num_trials, seed=config.split_seed
    )
    print(
        f"{bench.name} at {bench.root}: {len(bench.persons)} persons, {bench.num_images} images; "
        f"{bench.split}; {protocol}"
    )
    t0 = time.perf_counter()
    rows = _BenchmarkFeatures(LomoXqda(config, cache_dir), bench)
    seconds = {"features": time.perf_counter() - t0, "fit": 0.0, "distances": 0.0}
    results = []
    for trial in bench.trials:
        result = _run_trial(config, protocol, bench, trial, rows, cache_dir)
        seconds["fit"] += result.pipeline.fit_seconds
        seconds["distances"] += result.distance_seconds
        results.append(result)
        print(
            f"  trial {trial.index + 1}/{len(bench.trials)}: rank-1 {100 * result.cmc[0]:.1f}%  "
            f"({len(trial.test_pids)} test persons, XQDA {result.record['xqda_dim']}-d, fit "
            f"{result.pipeline.fit_seconds:.1f} s)",
            flush=True,
        )
    first = results[0]
    mark_run_folder(out_dir, RUN_KIND)  # before the first output: a killed run is still ours
    first.pipeline.save(out_dir / "xqda.npz")
    atomic_write_text(
        out_dir / "trials.json",
        json.dumps(
            {"benchmark": bench.name, "split": bench.split, "trials": [r.split for r in results]},
            indent=1,
        ),
    )
    summary = _trials_summary(config, protocol, name, bench, results, rows.features.shape[1])
    summary["seconds"] = seconds
    return FittedRun(summary, first.pipeline, first.probes, first.projected_gallery, out_dir)


def _trials_summary(config, protocol, name, bench, results, feature_dim: int) -> dict:
    mean, std = mean_cmc([r.cmc for r in results])
    figure = benchmarks.published_figure(config.dataset, protocol)
    per_trial = [r.record for r in results]
    return {
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
        "num_trials": len(results),
        **{f"rank{k}": rank_at(mean, k) for k in TRIAL_RANKS},
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
        "feature_dim": int(feature_dim),
        "xqda_dim": per_trial[-1]["xqda_dim"],
        "xqda_dim_mean": float(np.mean([t["xqda_dim"] for t in per_trial])),
        "metric_eigenvalues_clipped": int(results[-1].pipeline.model.n_clipped_),
    }


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------
def _in_root(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def rank_at(cmc: np.ndarray, k: int) -> float:
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


def accuracy_text(s: dict) -> str:
    """The run's accuracy, in a few lines (both protocols)."""
    retinex = "on" if s["config"]["retinex"] else "off"
    if s["protocol"] == "market":
        return (
            f"\nLOMO + XQDA on {s['dataset']}: rank-1 {100 * s['rank1']:.1f}%  rank-5 "
            f"{100 * s['rank5']:.1f}%  rank-10 {100 * s['rank10']:.1f}%  mAP {100 * s['mAP']:.1f}% "
            f"(torchreid-style {100 * s['mAP_torchreid']:.1f}%)\n"
            f"  {s['num_queries']} queries ({s['num_valid_queries']} with a true match) against "
            f"{s['num_gallery']} gallery images; trained on {s['num_train']} images, "
            f"{s['num_train_ids']} ids, {s['num_train_cams']} cameras\n"
            f"  LOMO {s['feature_dim']}-d -> XQDA {s['xqda_dim']}-d "
            f"({s['metric_eigenvalues_clipped']} negative metric eigenvalues); Retinex {retinex}"
        )
    first = s["trials"][0]
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
        f"Retinex {retinex}"
    )
    return "\n".join(lines)


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


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def config_parser(description: str) -> argparse.ArgumentParser:
    """The flags of :class:`ClassicalConfig` (shared with ``compare.lomo_xqda``); every default
    comes from the dataclass."""
    d = ClassicalConfig()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", default=d.dataset, help=f"layout name (default {d.dataset})")
    parser.add_argument("--data-root", default=None, help="dataset folder")
    parser.add_argument(
        "--input-size",
        "--size",
        dest="input_size",
        type=image_size,
        default=d.input_size,
        help=f"LOMO input HxW, as deep.train's (default {d.input_size[0]}x{d.input_size[1]})",
    )
    parser.add_argument(
        "--retinex",
        action=argparse.BooleanOptionalAction,
        default=d.retinex,
        help="MSRCR on the colour branch (default off: our approximation of the paper's Retinex "
        "lowers accuracy, see classical/retinex.py)",
    )
    parser.add_argument("--reg", type=float, default=d.reg, help=f"XQDA lambda (default {d.reg:g})")
    parser.add_argument(
        "--n-components",
        type=positive_int,
        default=None,
        help="XQDA dimension (default: automatic)",
    )
    parser.add_argument("--solver", choices=SOLVERS, default=d.solver, help="XQDA eigen-solver")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=None,
        help="market (Market-1501 evaluation), or Liao's single-shot / multi-shot trials on viper, "
        "cuhk01, cuhk03, cuhk03-detected (default: the dataset's own; multi-shot for cuhk01, "
        "single-shot for viper and cuhk03, market otherwise)",
    )
    parser.add_argument(
        "--trials", type=positive_int, default=None, help="two-view protocols: first N trials (all)"
    )
    parser.add_argument(
        "--split-seed",
        type=non_negative_int,
        default=d.split_seed,
        help="benchmarks: trial t is seeded with this + t (default 0)",
    )
    add_runs_dir_argument(parser)
    parser.add_argument(
        "--out",
        default=None,
        help="run folder, as deep.train --out (default <runs-dir>/classical/<run name>); a run "
        "elsewhere never enters the results table",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")
    return parser


def config_from_args(args: argparse.Namespace) -> ClassicalConfig:
    return ClassicalConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        input_size=args.input_size,
        retinex=args.retinex,
        reg=args.reg,
        n_components=args.n_components,
        solver=args.solver,
        protocol=args.protocol,
        num_trials=args.trials,
        split_seed=args.split_seed,
        runs_dir=str(RunsLayout.at(args.runs_dir).root),
        out=args.out,
        progress=not args.no_progress,
    )


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = config_parser("LOMO + XQDA: fit and score (make lomo-xqda also times it)")
    args = parser.parse_args(argv)
    config = config_from_args(args)
    fitted = run(config)
    print(accuracy_text(fitted.summary))
    print(f"  wrote {fitted.out_dir / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
