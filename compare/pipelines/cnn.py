"""The CNNs (:mod:`deep`) as ``compare`` sees them: the results table's ``deep`` pipeline.

Its study rows come from the distillation study (``python -m compare.distillation``, one profile
of :mod:`deep.profiles`); every run is timed on every installed inference engine
(:mod:`deep.export`, :mod:`compare.measure`), the int8 ones included (:mod:`deep.quantize`),
one row per engine. Families and short names come
from the model registry (:mod:`deep.models`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from compare.measure import current_rows, measure_run, rows_from_summary
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
from compare.reranking import ONLINE
from compare.results import ResultRow, fill_defaults
from compare.timing import thread_limit
from data.images import parse_size
from data.layouts import ReidDataset
from data.paths import REPO_ROOT
from data.runs import RunsLayout
from deep.checkpoint import load_trained
from deep.export import available_engines, engine_embeddings, load_engine
from deep.loader import load_records
from deep.models import list_models, model_spec
from deep.profiles import PROFILES
from deep.quantize import engine_file

#: CNN embedding sizes always measured (ResNet-18/34, MobileNet v1 1.0, ResNet-50/101).
CNN_DIMS = (512, 1024, 2048)


def expected_deep_rows(dataset: str, profile: str) -> set[tuple[str, str, int, str, str]] | None:
    """(model, variant, seed, input_size, init) the distillation profile writes, or None if
    unknown. The initialisation is part of it: rows of scratch runs do not stand in for the
    fine-tuned runs of a profile that fine-tunes."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {sorted(PROFILES)}")
    p = PROFILES[profile]

    def size_init(model: str) -> tuple[str, str]:
        recipe = p.recipe_for(model)
        return "x".join(str(v) for v in recipe["input_size"]), recipe.get("init", "scratch")

    rows = {(p.teacher, "baseline", 0, *size_init(p.teacher))}
    for seed in p.seeds:
        for student in p.students:
            rows |= {
                (student, "baseline", seed, *size_init(student)),
                (student, "distilled", seed, *size_init(student)),
            }
    return rows


def short_name(model: str) -> str:
    """The registry's short name (``resnet50`` -> R50, ``mobilenet_v1_0.25`` -> MNv1 0.25);
    unknown names unchanged."""
    return model_spec(model).short_name if model in list_models() else model


class CnnPipeline(Pipeline):
    name = "deep"
    label = "CNN"
    families = (
        FamilyStyle("ResNet", marker="o", color="#1f77b4"),
        FamilyStyle("MobileNet v1", marker="^", color="#d62728"),
        FamilyStyle("MobileNet v2", marker="D", color="#2ca02c"),
        # a registry family the plot has no style for (e.g. OSNet)
        FamilyStyle("other", marker="P", color="#9467bd"),
    )
    variants = (
        Variant("baseline", hollow=True, legend="trained alone"),
        Variant(
            "distilled",
            suffix=" KD",
            legend="distilled (KD)",
            derived_from="baseline",
            arrow_legend="alone → distilled",
        ),
    )
    multi_engine = True
    reports_init = True

    def family(self, model: str) -> str:
        if model in list_models():
            name = model_spec(model).family
            return name if name in {s.name for s in self.families} else "other"
        return "other"

    def short_name(self, model: str) -> str:
        return short_name(model)

    def missing(self, rows: pd.DataFrame | None, dataset: str, profile: str) -> bool:
        expected = expected_deep_rows(dataset, profile)
        have = set()
        if rows is not None:
            deep = fill_defaults(rows[rows.pipeline.astype(str) == self.name])
            have = set(
                zip(
                    deep.model,
                    deep.variant,
                    deep.seed.astype(int),
                    deep.input_size,
                    deep.init,
                    strict=True,
                )
            )
        if expected is None:  # profile unknown: require at least a baseline and a distilled row
            return not set(self.variant_names) <= {row[1] for row in have}
        return not expected <= have

    def run_args(
        self,
        dataset: str,
        data_root: str | None,
        profile: str,
        jobs: int | None,
        layout: RunsLayout,
    ) -> list[str]:
        root = ["--data-root", str(data_root)] if data_root else []
        extra = ["--jobs", str(jobs)] if jobs else []
        runs = ["--runs-dir", str(layout.root)]
        return [
            "compare.distillation",
            "--dataset",
            dataset,
            *root,
            "--profile",
            profile,
            *extra,
            *runs,
        ]

    def scaling_dims(
        self, rows: pd.DataFrame, dataset: str | None, layout: RunsLayout | None = None
    ) -> list[tuple[int, str]]:
        dims = [(dim, "") for dim in CNN_DIMS]
        models = rows[["model", "embedding_dim"]].drop_duplicates()
        for model, dim in models.itertuples(index=False):
            if pd.notna(dim):
                dims.append((int(dim), self.short_name(str(model))))
        return dims

    def batch_extractor(self, run: RunRef, threads: int) -> BatchExtractor:
        """The run's model on the row's engine (its exported ``model.onnx`` for ONNX Runtime /
        OpenVINO, its int8 file for the int8 engines)."""
        path = resolve(run.run_dir, REPO_ROOT)
        engine_name = run.engine or "torch"
        source = load_trained(path)[0] if engine_name == "torch" else engine_file(path, engine_name)
        engine = load_engine(
            source, engine_name, threads=threads, input_size=parse_size(run.input_size)
        )
        return engine

    def ann_features(
        self, run: RunRef, dataset: ReidDataset, threads: int
    ) -> dict[str, np.ndarray] | None:
        """Embeddings of every split by the run's trained model (PyTorch), as matched:
        Euclidean."""
        path = resolve(run.run_dir, REPO_ROOT)
        size = parse_size(run.input_size)
        engine = load_engine(load_trained(path)[0], "torch", threads=threads, input_size=size)
        with thread_limit(threads):
            return {
                split: engine_embeddings(engine, load_records(getattr(dataset, split), size))
                for split in ("train", "query", "gallery")
            }

    def engines(self) -> list[str]:
        # the int8 engines too: each run quantised on its training images (deep.quantize)
        return available_engines(int8=True)

    def engine_rows(
        self, run_dir: str, missing: Sequence[str], context: EngineContext
    ) -> list[ResultRow]:
        """Rows restored from the run's ``summary.json`` when it holds them for the current
        weights, the others measured (:func:`compare.measure.measure_run`). A run without
        ``model.pt`` gets none."""
        run = resolve(run_dir, REPO_ROOT)
        if not (run / "model.pt").is_file():
            context.done.append(f"no model.pt; not timed on {', '.join(missing)}")
            return []
        rows = current_rows(run, list(missing))
        restored = {r.engine for r in rows}
        left = [e for e in missing if e not in restored]
        if left:
            summary = _measure(run, context, left)
            # every engine of the new summary (torch too, in case it was re-timed)
            rows = [r for r in rows if r.engine not in summary.get("engines", {})]
            rows += rows_from_summary(summary, Path(run))
        what = [f"restored {sorted(restored)} from summary.json"] if restored else []
        what += [f"timed {left}"] if left else []
        context.done.append("; ".join(what))
        return rows

    def rerank_rows(self, rows: pd.DataFrame, context: EngineContext) -> list[ResultRow]:
        """Re-ranked rows of every run of ``rows`` on its rows' engines: restored from its
        ``summary.json`` when it holds them, else measured (:func:`compare.measure.measure_run`
        with ``rerank``, which times its plain rows again too)."""
        out: list[ResultRow] = []
        for run_dir, of_run in rows.groupby(rows.run_dir.astype(str), sort=True):
            run = resolve(run_dir, REPO_ROOT)
            if not (run / "model.pt").is_file():
                context.done.append(f"{run_dir}: no model.pt; not re-ranked")
                continue
            engines = sorted(set(of_run.engine.astype(str)))
            held = current_rows(run, engines)
            if sum(r.rerank == ONLINE for r in held) == len(engines):
                out += held
                context.done.append(f"{run_dir}: restored from summary.json")
                continue
            summary = _measure(run, context, engines, rerank=True)
            out += [r for r in rows_from_summary(summary, run) if r.engine in engines]
            context.done.append(f"{run_dir}: re-ranked on {', '.join(engines)}")
        return out


def _measure(run: Path, context: EngineContext, engines: list[str], *, rerank: bool = False):
    """The run measured on ``engines`` for the study (its summary, no table row written)."""
    return measure_run(
        run,
        layout=context.layout,
        dataset=context.load(),
        threads=context.threads,
        table=False,
        engines=engines,
        rerank=rerank,
    )


register(CnnPipeline())
