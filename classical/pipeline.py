"""LOMO + XQDA end to end: ``make lomo-xqda`` (``python -m classical.pipeline``).

1. Load the dataset (the synthetic one is generated when missing).
2. LOMO features of train / query / gallery, cached in ``runs/<dataset>/cache/lomo/``.
3. XQDA fitted on the training set (identities and cameras: all cross-camera pairs).
4. XQDA distances of every query to the gallery; CMC and mAP with both AP definitions.
5. Milliseconds per query: LOMO of one decoded query image (resize included) + projection +
   matching against the projected gallery with top-k ranking, batch size 1, median over at least
   100 queries (cycled when there are fewer), one thread unless ``--threads`` says otherwise.
6. ``runs/<dataset>/classical/lomo_xqda/summary.json`` and ``xqda.npz`` (W, M), a row in
   ``runs/<dataset>/results.csv``, and a one-screen summary.

    python -m classical.pipeline --dataset synthetic
    python -m classical.pipeline --dataset market1501 --data-root /data/Market-1501-v15.09.15
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from classical.features import extract_split
from classical.lomo import lomo
from classical.xqda import XQDA
from compare.evaluation import evaluate
from compare.matching import topk_from_distances
from compare.results import ResultRow, atomic_write_text, extra_json, upsert_rows
from compare.timing import machine_info, thread_limit, time_queries
from data.images import ImageLoadError, load_image, resize
from data.layouts import load_dataset
from data.paths import REPO_ROOT, run_dir_for


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
        MSRCR on the colour branch (the paper's setting; an approximation, see
        :mod:`classical.retinex`).
    reg, n_components, solver
        XQDA parameters.
    threads : int or None
        Threads for the per-query timing (None: all cores). Extraction and fitting use all cores.
    num_timed_queries, top_k : int
        Timed queries (cycled when the query set is smaller) and the ranking depth when timing.
    run_root : str or None
        Folder for this dataset's outputs (default ``runs/<dataset>``): the run goes to
        ``<run_root>/classical/lomo_xqda``, the cache to ``<run_root>/cache/lomo`` and the row to
        ``<run_root>/results.csv``.
    progress : bool
        tqdm bars during extraction.
    """

    dataset: str = "synthetic"
    data_root: str | None = None
    size: tuple[int, int] = (128, 48)
    retinex: bool = True
    reg: float = 1e-3
    n_components: int | None = None
    solver: str = "svd"
    threads: int | None = 1
    num_timed_queries: int = 100
    top_k: int = 50
    run_root: str | None = None
    progress: bool = True


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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(buffer.getvalue())
    os.replace(tmp, path)


def _relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def run(config: ClassicalConfig) -> dict:
    """Run the classical pipeline; returns the summary (also written to ``summary.json``)."""
    start = time.perf_counter()
    dataset = load_dataset(config.dataset, config.data_root)
    print(dataset.summary())
    for split in ("train", "query", "gallery"):
        if not getattr(dataset, split):
            raise ValueError(f"dataset {config.dataset!r} has no {split} images")
    root = Path(config.run_root) if config.run_root else run_dir_for(config.dataset)
    out_dir = root / "classical" / "lomo_xqda"
    cache = root / "cache" / "lomo"
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"retinex": config.retinex}

    seconds = {}
    t0 = time.perf_counter()
    feats = {
        split: extract_split(
            getattr(dataset, split),
            cache,
            size=config.size,
            params=params,
            desc=f"LOMO {split}",
            progress=config.progress,
        )
        for split in ("train", "query", "gallery")
    }
    seconds["features"] = time.perf_counter() - t0

    labels = {
        split: (
            np.array([r.pid for r in getattr(dataset, split)]),
            np.array([r.camid for r in getattr(dataset, split)]),
        )
        for split in ("train", "query", "gallery")
    }
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

    # Per-query latency: decoded query image -> LOMO -> projection -> XQDA ranking.
    components = np.ascontiguousarray(model.components_, dtype=np.float32)
    n_images = min(len(dataset.query), config.num_timed_queries)
    query_images = [load_image(r.path) for r in dataset.query[:n_images]]

    def extract_one(image: np.ndarray) -> np.ndarray:
        feature = lomo(resize(image, config.size), retinex=config.retinex, dtype=np.float32)
        return feature @ components

    with thread_limit(None):  # compile/warm the kernels outside the timed region
        extract_one(query_images[0])
    timing = time_queries(
        extract_one,
        matcher.match,
        query_images,
        num_queries=max(100, config.num_timed_queries),
        threads=config.threads,
    )
    _save_model(out_dir / "xqda.npz", model, config)
    seconds["total"] = time.perf_counter() - start

    feature_dim = int(feats["train"].shape[1])
    xqda_dim = int(model.n_components_)
    summary = {
        "dataset": config.dataset,
        "config": asdict(config),
        "rank1": _rank(official, 1),
        "rank5": _rank(official, 5),
        "rank10": _rank(official, 10),
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
    row = ResultRow(
        dataset=config.dataset,
        pipeline="classical",
        model="lomo_xqda",
        variant="classical",
        seed=0,
        input_size=f"{config.size[0]}x{config.size[1]}",
        params=int(model.components_.size + model.metric_.size),
        gflops=float("nan"),
        embedding_dim=xqda_dim,
        rank1=100 * summary["rank1"],
        rank5=100 * summary["rank5"],
        rank10=100 * summary["rank10"],
        mAP=100 * official.mAP,
        mAP_torchreid=100 * torchreid.mAP,
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
            projection_gflops=2 * feature_dim * xqda_dim / 1e9,
            gflops_note="LOMO is integer histogram work; FLOPs not meaningful",
        ),
    )
    upsert_rows(root / "results.csv", [row])
    _print_summary(summary, out_dir)
    return summary


def _rank(result, k: int) -> float:
    """CMC at rank k; the curve is capped at the gallery size and flat beyond it."""
    return float(result.cmc[min(k, len(result.cmc)) - 1])


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _print_summary(s: dict, out_dir: Path) -> None:
    t = s["timing"]
    sec = s["seconds"]
    print(
        f"\nLOMO + XQDA on {s['dataset']}: rank-1 {100 * s['rank1']:.1f}%  rank-5 "
        f"{100 * s['rank5']:.1f}%  rank-10 {100 * s['rank10']:.1f}%  mAP {100 * s['mAP']:.1f}% "
        f"(torchreid-style {100 * s['mAP_torchreid']:.1f}%)\n"
        f"  {s['num_queries']} queries ({s['num_valid_queries']} with a true match) against "
        f"{s['num_gallery']} gallery images; trained on {s['num_train']} images, "
        f"{s['num_train_ids']} ids, {s['num_train_cams']} cameras\n"
        f"  LOMO {s['feature_dim']}-d -> XQDA {s['xqda_dim']}-d "
        f"({s['metric_eigenvalues_clipped']} negative metric eigenvalues)\n"
        f"  ms/query {t['ms_query']:.2f} = LOMO+projection {t['ms_extract']:.2f} + matching "
        f"{t['ms_match']:.3f} (p90 {t['ms_query_p90']:.2f}; median of {t['num_queries']}, "
        f"{t['threads']} thread(s))\n"
        f"  features {sec['features']:.1f} s, fit {sec['fit']:.1f} s, total {sec['total']:.1f} s\n"
        f"  wrote {out_dir / 'summary.json'} and a row of {out_dir.parents[1] / 'results.csv'}"
    )


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
        default=True,
        help="MSRCR on the colour branch (default on, as in the paper)",
    )
    parser.add_argument("--reg", type=float, default=1e-3, help="XQDA lambda (0.001)")
    parser.add_argument("--n-components", type=int, default=None, help="XQDA dimension (auto)")
    parser.add_argument("--solver", choices=("svd", "eig"), default="svd")
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
