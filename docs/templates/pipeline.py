"""Template: a third pipeline on the trade-off plane (colour histograms + Euclidean matching).

Copy this file to ``compare/pipelines/colour_histograms.py``: every module of that package is
imported with it, so this one file is the whole change. The study (``make tradeoff-plot``) then
runs its command when the results table lacks its row, times it with the same harness as
LOMO+XQDA and the CNNs, measures its throughput and gallery-size scaling, plots it with its own
marker and lists it in ``tradeoff.md``. Run it alone with::

    python -m compare.pipelines.colour_histograms --dataset synthetic --runs-dir runs

The feature: each image resized to 128x48, cut into 6 horizontal stripes, an 8-bin histogram per
RGB channel and stripe (144 values), L2-normalised; gallery ranked by Euclidean distance.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import pandas as pd

from compare.pipelines import FamilyStyle, Pipeline, RunRef, Variant, register, time_run_queries
from compare.results import ResultRow, read_results, upsert_rows
from data.cli import entry_point, positive_int
from data.images import load_images, size_text
from data.layouts import load_dataset, record_arrays
from data.protocols import evaluate
from data.runs import RunsLayout, add_runs_dir_argument, layout_from_args

NAME = "colour_histograms"
INPUT_SIZE = (128, 48)
STRIPES = 6
BINS = 8


def colour_histograms(images: np.ndarray) -> np.ndarray:
    """(n, H, W, 3) uint8 -> (n, 3 * STRIPES * BINS) float32, each row of unit L2 norm."""
    n, height = images.shape[0], images.shape[1]
    codes = (images.astype(np.int64) * BINS) // 256  # bin of each channel value
    edges = np.linspace(0, height, STRIPES + 1).astype(int)
    features = np.zeros((n, STRIPES, 3, BINS), np.float32)
    for stripe in range(STRIPES):
        block = codes[:, edges[stripe] : edges[stripe + 1]].reshape(n, -1, 3)
        for channel in range(3):
            one_hot = block[:, :, channel, None] == np.arange(BINS)
            features[:, stripe, channel] = one_hot.sum(axis=1)
    features = features.reshape(n, -1)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


class ColourHistograms(Pipeline):
    name = NAME
    label = "colour histograms"
    families = (FamilyStyle("Colour histograms", marker="P", color="#17becf"),)
    variants = (Variant("plain"),)

    def family(self, model: str) -> str:
        return "Colour histograms"

    def short_name(self, model: str) -> str:
        return "Colour hist."

    def batch_extractor(self, run: RunRef, threads: int):
        return colour_histograms

    def feature_dim(self, run: RunRef) -> int:
        return 3 * STRIPES * BINS

    def missing(self, rows: pd.DataFrame | None, dataset: str, profile: str) -> bool:
        return rows is None or not (rows.pipeline == NAME).any()

    def run_args(self, dataset, data_root, profile, jobs, layout: RunsLayout) -> list[str]:
        args = ["-m", __name__, "--dataset", dataset, "--runs-dir", str(layout.root)]
        return args + (["--data-root", str(data_root)] if data_root else [])


register(ColourHistograms())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="synthetic", help="dataset layout name")
    parser.add_argument("--data-root", default=None, help="dataset root folder")
    parser.add_argument("--threads", type=positive_int, default=1, help="threads for timing")
    add_runs_dir_argument(parser)
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    layout = layout_from_args(args)
    data = load_dataset(args.dataset, args.data_root)
    query = load_images([r.path for r in data.query], INPUT_SIZE)
    gallery = load_images([r.path for r in data.gallery], INPUT_SIZE)
    q, g = colour_histograms(query), colour_histograms(gallery)
    distances = ((q**2).sum(1)[:, None] + (g**2).sum(1)[None, :]) - 2 * q @ g.T
    (q_ids, q_cams), (g_ids, g_cams) = record_arrays(data.query), record_arrays(data.gallery)
    scores = evaluate(distances, q_ids, g_ids, q_cams, g_cams)
    torchreid = evaluate(distances, q_ids, g_ids, q_cams, g_cams, ap="torchreid")
    run = RunRef(pipeline=NAME, model=NAME, input_size=size_text(INPUT_SIZE))
    timing = time_run_queries(run, list(query), gallery, threads=args.threads)
    row = ResultRow(
        dataset=args.dataset,
        pipeline=NAME,
        model=NAME,
        variant="plain",
        seed=0,
        input_size=size_text(INPUT_SIZE),
        params=0,
        gflops=0.0,
        embedding_dim=q.shape[1],
        rank1=100 * scores.cmc[0],
        rank5=100 * scores.cmc[4],
        rank10=100 * scores.cmc[9],
        mAP=100 * scores.mAP,
        mAP_torchreid=100 * torchreid.mAP,
        ms_extract=timing.ms_extract,
        ms_match=timing.ms_match,
        ms_query=timing.ms_query,
        ms_query_p90=timing.ms_query_p90,
        threads=timing.threads,
        engine="numpy",
        init="none",
    )
    table = layout.results_table(args.dataset)
    upsert_rows(table, [row])
    print(f"{NAME}: rank-1 {row.rank1:.1f}%  mAP {row.mAP:.1f}%  {row.ms_query:.3f} ms/query")
    print(f"rows of {table}: {int((read_results(table).pipeline == NAME).sum())} of this pipeline")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
