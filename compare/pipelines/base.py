"""What ``compare`` needs to know about a pipeline, and the registry of pipelines.

A pipeline (the results table's ``pipeline`` column: ``classical``, ``deep``, ...) is an adapter
subclassing :class:`Pipeline` and registered once with :func:`register`, in the style of the
model registry (:mod:`deep.models`). The study runner, the scaling and throughput measurements,
the plot and the report ask the adapter of each row instead of testing pipeline names; a new
pipeline is one new module in ``compare/pipelines/`` (every module there is imported with the
package).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from compare.results import ResultRow, RowExtra
from compare.timing import TOP_K, TimingResult, time_queries
from data.layouts import ReidDataset
from data.matching import GalleryIndex
from data.runs import RunsLayout

#: Decoded RGB images (n, H, W, 3) -> features (n, dim): bulk extraction, timed for throughput.
BatchExtractor = Callable[[np.ndarray], np.ndarray]
#: One query feature -> indices of its top-k gallery items, best first.
Matcher = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FamilyStyle:
    """How the plot draws one family of models: marker, colour, marker size (legend order is
    the registry's order, then each pipeline's ``families`` order)."""

    name: str
    marker: str
    color: str
    markersize: float = 8.0


@dataclass(frozen=True)
class Variant:
    """A value of the results table's ``variant`` column and how the plot shows it: a label
    suffix, hollow or filled markers, a legend entry, and the variant of the same model it is
    drawn joined to by an arrow (``derived_from``: a variant that only changes what happens after
    extraction or training, e.g. distillation, whose extraction cost is its origin's)."""

    name: str
    suffix: str = ""
    hollow: bool = False
    legend: str = ""
    derived_from: str = ""
    #: legend text of the arrow from ``derived_from`` to this variant
    arrow_legend: str = ""


@dataclass(frozen=True)
class RunRef:
    """The facts of one results row a pipeline needs to rebuild its extractor: which model,
    at which input size, from which run folder, on which engine, with which settings."""

    pipeline: str
    model: str
    input_size: str  # "HxW"
    run_dir: str = ""
    engine: str = ""
    embedding_dim: int | None = None
    extra: RowExtra = field(default_factory=RowExtra)

    @classmethod
    def from_row(cls, row: pd.Series) -> RunRef:
        run_dir = row.get("run_dir", "")
        dim = row.get("embedding_dim")
        return cls(
            pipeline=str(row.pipeline),
            model=str(row.model),
            input_size=str(row.input_size),
            run_dir="" if pd.isna(run_dir) else str(run_dir),
            engine=str(row.get("engine", "")),
            embedding_dim=None if dim is None or pd.isna(dim) else int(dim),
            extra=row_extra(row),
        )


def row_extra(row: pd.Series) -> RowExtra:
    """The typed fields of a row's ``extra`` JSON column (defaults when absent or not JSON)."""
    return RowExtra.parse(row.get("extra", "{}"))


class Pipeline(ABC):
    """One pipeline as ``compare`` sees it. Subclasses set the class attributes and implement
    the abstract methods; the defaults suit a pipeline with one engine and no study runs."""

    #: The results table's ``pipeline`` value of its rows.
    name: ClassVar[str]
    #: Human name (notes, messages).
    label: ClassVar[str]
    #: Plot styles of its model families, in legend order; the first is the fallback.
    families: ClassVar[tuple[FamilyStyle, ...]]
    #: Variants (the results table's ``variant``) the plot and report show.
    variants: ClassVar[tuple[Variant, ...]]
    #: Its runs are timed on several inference engines: each point is shown at its fastest
    #: engine, labels carry the engine when they differ, the engine table lists them.
    multi_engine: ClassVar[bool] = False
    #: Its rows' ``init`` says how the model was initialised (shown in captions and labels).
    reports_init: ClassVar[bool] = False

    def variant(self, name: str) -> Variant:
        """The plotted variant ``name`` (a plain one when it is not among :attr:`variants`)."""
        return next((v for v in self.variants if v.name == name), Variant(name))

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variants)

    @abstractmethod
    def family(self, model: str) -> str:
        """Family of ``model`` (one of :attr:`families`' names)."""

    @abstractmethod
    def short_name(self, model: str) -> str:
        """Label of ``model`` in tables and the plot."""

    @abstractmethod
    def batch_extractor(self, run: RunRef, threads: int) -> BatchExtractor:
        """Bulk extraction of ``run``'s model (throughput), computing with ``threads``."""

    def feature_dim(self, run: RunRef) -> int | None:
        """Dimension of the features its matcher compares (None when unknown)."""
        return None

    def matcher(self, gallery: np.ndarray, k: int = TOP_K) -> Matcher:
        """Ranks ``gallery`` for one query feature (default: Euclidean GEMV + top-k)."""
        return GalleryIndex(gallery, k=k).match

    def ann_features(
        self, run: RunRef, dataset: ReidDataset, threads: int
    ) -> dict[str, np.ndarray] | None:
        """Features of ``dataset``'s ``train`` / ``query`` / ``gallery`` splits that ``run``'s
        matcher ranks, in a Euclidean form (squared distances give its ranking), for the
        approximate-search measurement (:mod:`compare.ann_scaling`); None: not supported."""
        return None

    def scaling_dims(
        self, rows: pd.DataFrame, dataset: str | None, layout: RunsLayout | None = None
    ) -> list[tuple[int, str]]:
        """(feature dimension, whose) pairs the gallery-size scaling measures for ``rows`` (this
        pipeline's rows; ``layout``: where its study runs are); ``""`` = a dimension measured for
        reference only."""
        return [(int(d), "") for d in rows.embedding_dim.dropna().unique()]

    def study_rows(self, rows: pd.DataFrame) -> pd.Series:
        """Which of its ``rows`` the study plots (default: all)."""
        return pd.Series(True, index=rows.index)

    def unplotted_note(self, count: int) -> str:
        """Why ``count`` of its rows outside :meth:`study_rows` are not plotted."""
        return f"{count} {self.label} row(s) outside the study are in results.csv but not plotted."

    def plotted_model(self, model: str) -> str:
        """The ``model`` a study row is plotted and tabulated under (default: unchanged)."""
        return model

    def missing(self, rows: pd.DataFrame | None, dataset: str, profile: str) -> bool:
        """Whether the study still lacks rows of this pipeline (``rows``: the dataset's table,
        None when there is none). Default: never (a pipeline without study runs)."""
        return False

    def run_args(
        self,
        dataset: str,
        data_root: str | None,
        profile: str,
        jobs: int | None,
        layout: RunsLayout,
    ) -> list[str]:
        """``python -m`` arguments of the command producing its missing study rows (in
        ``layout``'s runs tree)."""
        raise NotImplementedError(f"pipeline {self.name!r} has no study command")

    def engines(self) -> list[str]:
        """Engines every run of it should have a row for (default: none to add)."""
        return []

    def engine_rows(
        self, run_dir: str, missing: Sequence[str], context: EngineContext
    ) -> list[ResultRow]:
        """Rows of ``run_dir`` on the ``missing`` engines (restored or timed)."""
        raise NotImplementedError(f"pipeline {self.name!r} has no engines to add")

    def rerank_rows(self, rows: pd.DataFrame, context: EngineContext) -> list[ResultRow]:
        """Re-ranked twins (:mod:`compare.reranking`) of its plain study ``rows`` that have
        none, restored or measured (rows an adapter upserts itself are not returned)."""
        raise NotImplementedError(f"pipeline {self.name!r} cannot add re-ranked rows")


@dataclass
class EngineContext:
    """What timing a run on more engines (or re-ranking it) may need: the dataset (loaded once,
    on demand), the thread count of the run's rows, the runs tree, and a place to say what was
    done."""

    load: Callable[[], object]
    threads: int
    layout: RunsLayout
    done: list[str] = field(default_factory=list)
    #: the dataset's name and folder (for a pipeline that re-runs itself)
    dataset: str = ""
    data_root: str | None = None


_REGISTRY: dict[str, Pipeline] = {}


def register(pipeline: Pipeline) -> Pipeline:
    """Add ``pipeline`` to the registry (one name, once; family names unique across pipelines)."""
    if pipeline.name in _REGISTRY:
        raise ValueError(f"pipeline {pipeline.name!r} is already registered")
    taken = {s.name for p in _REGISTRY.values() for s in p.families}
    clash = sorted(taken & {s.name for s in pipeline.families})
    if clash:
        raise ValueError(f"pipeline {pipeline.name!r}: families {clash} are already registered")
    if not pipeline.families or not pipeline.variants:
        raise ValueError(f"pipeline {pipeline.name!r} needs at least one family and one variant")
    _REGISTRY[pipeline.name] = pipeline
    return pipeline


def unregister(name: str) -> None:
    """Remove a pipeline (a test's toy pipeline); a KeyError for an unknown name."""
    del _REGISTRY[name]


def pipelines() -> list[Pipeline]:
    """Registered pipelines, in registration order."""
    return list(_REGISTRY.values())


def pipeline(name: str) -> Pipeline:
    """The adapter of ``name``; a ValueError listing the registered pipelines otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown pipeline {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def is_registered(name: str) -> bool:
    return name in _REGISTRY


def family_style(name: str) -> FamilyStyle:
    """The plot style of family ``name`` (any registered pipeline's)."""
    for p in _REGISTRY.values():
        for style in p.families:
            if style.name == name:
                return style
    raise ValueError(f"unknown family {name!r}")


def family_styles() -> list[FamilyStyle]:
    """Every registered family style, in legend order."""
    return [s for p in _REGISTRY.values() for s in p.families]


def variant_of(pipeline_name: str, name: str) -> Variant:
    """How the plot shows variant ``name`` of pipeline ``pipeline_name``."""
    return pipeline(pipeline_name).variant(name)


def variants() -> list[Variant]:
    """Every registered pipeline's variants, in legend order."""
    return [v for p in _REGISTRY.values() for v in p.variants]


def derived_rows(df: pd.DataFrame) -> pd.Series:
    """Mask of rows whose variant derives from another (:attr:`Variant.derived_from`): their
    extraction is their origin's, so extraction references skip them."""
    flags = [
        is_registered(str(p)) and bool(variant_of(str(p), str(v)).derived_from)
        for p, v in zip(df.pipeline, df.variant, strict=True)
    ]
    return pd.Series(flags, index=df.index, dtype=bool)


def rows_where(df: pd.DataFrame, test: Callable[[Pipeline], bool]) -> pd.Series:
    """Mask of ``df``'s rows whose registered pipeline passes ``test`` (False when unknown)."""
    wanted = {p.name for p in _REGISTRY.values() if test(p)}
    return df.pipeline.astype(str).isin(wanted)


def time_run_queries(
    run: RunRef,
    query_images: Sequence[np.ndarray],
    gallery_images: np.ndarray,
    *,
    threads: int | None = 1,
    num_queries: int = 100,
) -> TimingResult:
    """ms/query of ``run`` through its pipeline's adapter: the batch extractor at batch size 1,
    then its matcher against the extracted gallery (top-:data:`~compare.timing.TOP_K`)."""
    adapter = pipeline(run.pipeline)
    extract = adapter.batch_extractor(run, threads or 1)
    match = adapter.matcher(extract(gallery_images), TOP_K)
    return time_queries(
        lambda image: extract(image[None])[0],
        match,
        query_images,
        num_queries=num_queries,
        threads=threads,
    )


def resolve(path: str | Path, root: Path) -> Path:
    """A row's ``run_dir`` (relative to the repository when inside it) as a path."""
    path = Path(path)
    return path if path.is_absolute() else root / path
