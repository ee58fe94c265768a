"""LOMO + XQDA end to end: ``make lomo-xqda`` (``python -m classical.pipeline``).

Extract LOMO for train / query / gallery (cached), fit XQDA on the training set (all cross-camera
pairs), rank the gallery for every query, evaluate (official and torchreid-style mAP), time
milliseconds per query (LOMO of one decoded query image + projection + matching against the
projected gallery, batch 1), then write ``runs/<dataset>/classical/lomo_xqda/summary.json`` and a
row of ``runs/<dataset>/results.csv``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass

import numpy as np

from classical.features import extract_split
from classical.lomo import lomo
from classical.xqda import XQDA
from compare.evaluation import evaluate
from compare.matching import topk_from_distances
from compare.results import ResultRow, atomic_write_text, extra_json, upsert_rows
from compare.timing import machine_info, time_queries
from data.images import load_image, resize
from data.layouts import load_dataset
from data.paths import REPO_ROOT, run_dir_for

log = logging.getLogger(__name__)


@dataclass
class ClassicalConfig:
    """Settings of one LOMO + XQDA run."""

    dataset: str = "synthetic"
    data_root: str | None = None
    size: tuple[int, int] = (128, 48)  # the paper's LOMO input size (height, width)
    retinex: bool = True
    reg: float = 1e-3
    n_components: int | None = None
    solver: str = "svd"
    threads: int | None = 1  # see compare.timing: single-thread latency is the stable figure
    num_timed_queries: int = 100
    top_k: int = 50


class XQDAMatcher:
    """Match one projected query against the projected gallery with the XQDA metric.

    ``d(q, g) = q M q' + g M g' - 2 g M q'``: one (n_gallery x r) GEMV per query, then top-k.
    """

    def __init__(self, model: XQDA, projected_gallery: np.ndarray, k: int) -> None:
        self.metric = model.metric_
        self.gallery_m = projected_gallery @ self.metric
        self.gallery_norm = np.einsum("ij,ij->i", self.gallery_m, projected_gallery)
        self.k = min(k, projected_gallery.shape[0])

    def match(self, projected_query: np.ndarray) -> np.ndarray:
        q = projected_query.reshape(-1)
        dist = self.gallery_norm - 2.0 * (self.gallery_m @ q) + q @ self.metric @ q
        return topk_from_distances(dist[None, :], self.k)[0][0]


def run(config: ClassicalConfig) -> dict:
    """Run the classical pipeline and return the summary dict."""
    start = time.perf_counter()
    dataset = load_dataset(config.dataset, config.data_root)
    print(dataset.summary())
    out_dir = run_dir_for(config.dataset) / "classical" / "lomo_xqda"
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = run_dir_for(config.dataset) / "cache" / "lomo"
    params = {"retinex": config.retinex}
    feats = {}
    t0 = time.perf_counter()
    for split in ("train", "query", "gallery"):
        feats[split] = extract_split(
            getattr(dataset, split), cache, size=config.size, params=params, desc=f"LOMO {split}"
        )
    extract_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = XQDA(reg=config.reg, n_components=config.n_components, solver=config.solver)
    model.fit(
        np.asarray(feats["train"]),
        np.array([r.pid for r in dataset.train]),
        np.array([r.camid for r in dataset.train]),
    )
    fit_s = time.perf_counter() - t0

    q_proj = model.transform(np.asarray(feats["query"], dtype=np.float64))
    g_proj = model.transform(np.asarray(feats["gallery"], dtype=np.float64))
    dist = model.projected_distances(q_proj, g_proj)
    ids = {s: np.array([r.pid for r in getattr(dataset, s)]) for s in ("query", "gallery")}
    cams = {s: np.array([r.camid for r in getattr(dataset, s)]) for s in ("query", "gallery")}
    official = evaluate(dist, ids["query"], ids["gallery"], cams["query"], cams["gallery"])
    torchreid = evaluate(
        dist, ids["query"], ids["gallery"], cams["query"], cams["gallery"], ap="torchreid"
    )

    matcher = XQDAMatcher(model, g_proj, config.top_k)
    components = model.components_.astype(np.float64)
    query_images = [load_image(r.path) for r in dataset.query[: config.num_timed_queries]]

    def extract_one(image: np.ndarray) -> np.ndarray:
        feature = lomo(resize(image, config.size), retinex=config.retinex, dtype=np.float64)
        return feature @ components

    timing = time_queries(
        extract_one,
        matcher.match,
        query_images,
        num_queries=config.num_timed_queries,
        threads=config.threads,
    )
    input_size = f"{config.size[0]}x{config.size[1]}"
    summary = {
        "dataset": config.dataset,
        "config": {k: v for k, v in vars(config).items()},
        "rank1": official.rank(1),
        "rank5": official.rank(5),
        "rank10": official.rank(10),
        "mAP": official.mAP,
        "mAP_torchreid": torchreid.mAP,
        "num_queries": official.num_queries,
        "num_valid_queries": official.num_valid_queries,
        "feature_dim": int(feats["train"].shape[1]),
        "xqda_dim": int(model.n_components_),
        "xqda_top_spectrum": [float(v) for v in model.spectrum_[:10]],
        "metric_eigenvalues_clipped": int(model.n_clipped_),
        "seconds": {"extract_all": extract_s, "fit": fit_s, "total": time.perf_counter() - start},
        "timing": timing.as_dict(),
        "machine": machine_info(timing.threads),
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    row = ResultRow(
        dataset=config.dataset,
        pipeline="classical",
        model="lomo_xqda",
        variant="classical",
        seed=0,
        input_size=input_size,
        params=int(model.components_.size + model.metric_.size),
        gflops=float("nan"),
        embedding_dim=int(model.n_components_),
        rank1=100 * official.rank(1),
        rank5=100 * official.rank(5),
        rank10=100 * official.rank(10),
        mAP=100 * official.mAP,
        mAP_torchreid=100 * torchreid.mAP,
        ms_extract=timing.ms_extract,
        ms_match=timing.ms_match,
        ms_query=timing.ms_query,
        ms_query_p90=timing.ms_query_p90,
        threads=timing.threads,
        device="cpu",
        run_dir=str(out_dir.relative_to(REPO_ROOT))
        if out_dir.is_relative_to(REPO_ROOT)
        else str(out_dir),
        extra=extra_json(
            retinex=config.retinex,
            xqda_dim=int(model.n_components_),
            feature_dim=int(feats["train"].shape[1]),
        ),
    )
    upsert_rows(run_dir_for(config.dataset) / "results.csv", [row])
    _print_summary(summary, out_dir)
    return summary


def _print_summary(s: dict, out_dir) -> None:
    t = s["timing"]
    print(
        f"\nLOMO+XQDA on {s['dataset']}: rank-1 {100 * s['rank1']:.1f}%  rank-5 "
        f"{100 * s['rank5']:.1f}%  rank-10 {100 * s['rank10']:.1f}%  mAP {100 * s['mAP']:.1f}% "
        f"(torchreid-style {100 * s['mAP_torchreid']:.1f}%)\n"
        f"  queries {s['num_queries']} ({s['num_valid_queries']} with a match); LOMO "
        f"{s['feature_dim']}-d -> XQDA {s['xqda_dim']}-d ({s['metric_eigenvalues_clipped']} "
        f"negative metric eigenvalues)\n"
        f"  ms/query {t['ms_query']:.2f} (extract {t['ms_extract']:.2f} + match "
        f"{t['ms_match']:.3f}; p90 {t['ms_query_p90']:.2f}) on {t['threads']} thread(s)\n"
        f"  fit {s['seconds']['fit']:.1f} s, total {s['seconds']['total']:.1f} s\n"
        f"  summary: {out_dir / 'summary.json'}"
    )


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 128x48, got {text!r}") from None
    return h, w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LOMO + XQDA pipeline (make lomo-xqda)")
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--size", type=_size, default=(128, 48), help="LOMO input HxW")
    parser.add_argument("--retinex", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--reg", type=float, default=1e-3)
    parser.add_argument("--n-components", type=int, default=None)
    parser.add_argument("--solver", choices=("svd", "eig"), default="svd")
    parser.add_argument("--threads", type=int, default=1, help="threads for timing (0 = all)")
    parser.add_argument("--num-timed-queries", type=int, default=100)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = ClassicalConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        size=args.size,
        retinex=args.retinex,
        reg=args.reg,
        n_components=args.n_components,
        solver=args.solver,
        threads=args.threads or None,
        num_timed_queries=args.num_timed_queries,
    )
    try:
        run(config)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
