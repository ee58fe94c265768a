"""The classical pipeline (LOMO + XQDA, :mod:`classical.pipeline`) as ``compare`` sees it.

Its rows come from ``python -m compare.lomo_xqda``; the study plots only the run at ``make
lomo-xqda``'s defaults with the Market-1501 evaluation (:func:`classical.pipeline.study_run_name`),
under the name ``lomo_xqda``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from classical.lomo import layout
from classical.pipeline import ClassicalConfig, LomoXqda, study_run_name
from compare.lomo_xqda import measure
from compare.pipelines.base import (
    BatchExtractor,
    EngineContext,
    FamilyStyle,
    Pipeline,
    RunRef,
    Variant,
    register,
    resolve,
)
from compare.pipelines.base import row_extra as _extra
from compare.results import ResultRow
from compare.timing import thread_limit
from data.images import parse_size
from data.layouts import ReidDataset
from data.paths import REPO_ROOT
from data.runs import RunsLayout

#: LOMO dimension at the classical pipeline's default input size (26,960 at 128x48).
LOMO_DIM = layout(*ClassicalConfig().input_size).dim
#: The model name the study's run is plotted and tabulated under.
PLOTTED_MODEL = "lomo_xqda"


class ClassicalPipeline(Pipeline):
    name = "classical"
    label = "LOMO+XQDA"
    families = (FamilyStyle("classical", marker="s", color="#4d4d4d", markersize=9),)
    variants = (Variant("classical"),)

    def family(self, model: str) -> str:
        return "classical"

    def short_name(self, model: str) -> str:
        return self.label if model == PLOTTED_MODEL else model

    def plotted_model(self, model: str) -> str:
        return PLOTTED_MODEL

    def study_rows(self, rows: pd.DataFrame) -> pd.Series:
        """The rows at the study's settings (``make lomo-xqda``'s defaults, Market-1501)."""
        return rows.model.astype(str) == study_run_name()

    def unplotted_note(self, count: int) -> str:
        return (
            f"{count} LOMO+XQDA row(s) with other settings than the study's (make lomo-xqda "
            "defaults, Market-1501 evaluation) are in results.csv but not plotted."
        )

    def missing(self, rows: pd.DataFrame | None, dataset: str, profile: str) -> bool:
        if rows is None:
            return True
        mine = rows[rows.pipeline.astype(str) == self.name]
        return not self.study_rows(mine).any()

    def run_args(
        self,
        dataset: str,
        data_root: str | None,
        profile: str,
        jobs: int | None,
        layout: RunsLayout,
    ) -> list[str]:
        root = ["--data-root", str(data_root)] if data_root else []
        return [
            "compare.lomo_xqda", "--dataset", dataset, *root, "--protocol", "market",
            "--runs-dir", str(layout.root),
        ]  # fmt: skip

    def feature_dim(self, run: RunRef) -> int:
        """The raw LOMO dimension the projection reads."""
        return LOMO_DIM if run.extra.feature_dim is None else run.extra.feature_dim

    def scaling_dims(
        self, rows: pd.DataFrame, dataset: str | None, layout: RunsLayout | None = None
    ) -> list[tuple[int, str]]:
        """The XQDA subspace of each row and the raw LOMO dimension (from the study run's
        summary when the table has no classical row yet)."""
        dims = []
        lomo_dim = LOMO_DIM
        for _, row in rows.iterrows():
            extra = _extra(row)
            lomo_dim = lomo_dim if extra.feature_dim is None else extra.feature_dim
            xqda = row.embedding_dim if extra.xqda_dim is None else extra.xqda_dim
            if pd.notna(xqda):
                dims.append((int(xqda), "XQDA"))
        if dataset is not None and layout is not None and rows.empty:
            summary = layout.classical_run(dataset, study_run_name()) / "summary.json"
            if summary.is_file():
                data = json.loads(summary.read_text())
                lomo_dim = int(data.get("feature_dim", lomo_dim))
                if "xqda_dim" in data:
                    dims.append((int(data["xqda_dim"]), "XQDA"))
        dims.append((lomo_dim, "raw LOMO"))
        return dims

    def ann_features(
        self, run: RunRef, dataset: ReidDataset, threads: int
    ) -> dict[str, np.ndarray] | None:
        """LOMO (the study's LOMO cache) projected by the run's fitted XQDA (``xqda.npz``),
        then mapped so that squared Euclidean distances are XQDA distances (``XQDA.embedding``:
        ``M = E E'``, negative directions of ``M`` dropped)."""
        run_dir = resolve(run.run_dir, REPO_ROOT)
        path = run_dir / "xqda.npz"
        if not path.is_file():
            return None
        with np.load(path) as saved:
            components, metric = saved["components"], saved["metric"]
        eigvals, eigvecs = np.linalg.eigh(metric)
        to_euclidean = (components @ (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None)))).astype(
            np.float32
        )
        config = ClassicalConfig(
            input_size=parse_size(run.input_size), retinex=run.extra.retinex, progress=False
        )
        lomo = LomoXqda(config, RunsLayout.lomo_cache_of(run_dir))
        with thread_limit(threads):
            return {
                split: lomo.lomo(getattr(dataset, split), split) @ to_euclidean
                for split in ("train", "query", "gallery")
            }

    def batch_extractor(self, run: RunRef, threads: int) -> BatchExtractor:
        """Resize, LOMO and the XQDA projection (:meth:`LomoXqda.extract_batch`). The projection's
        cost depends only on its shape, so a random one of the row's shape stands in for the
        trained projection (which the pipeline does not store)."""
        config = ClassicalConfig(input_size=parse_size(run.input_size), retinex=run.extra.retinex)
        dim = run.embedding_dim or run.extra.xqda_dim or 0
        projection = np.random.default_rng(0).standard_normal((self.feature_dim(run), dim))
        return LomoXqda.with_projection(config, projection).extract_batch

    def rerank_rows(self, rows: pd.DataFrame, context: EngineContext) -> list[ResultRow]:
        """The study run fitted again (its LOMO features are cached) with ``--rerank``
        (:func:`compare.lomo_xqda.measure`), which upserts its plain and re-ranked rows."""
        config = ClassicalConfig(
            dataset=context.dataset,
            data_root=context.data_root,
            protocol="market",
            runs_dir=str(context.layout.root),
        )
        measure(config, threads=context.threads, rerank=True)
        context.done.append("LOMO+XQDA fitted again and re-ranked")
        return []


register(ClassicalPipeline())
