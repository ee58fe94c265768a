"""The runs tree, spelled once: :class:`RunsLayout` maps a root folder to every path under it.

::

    <root>/bench/                               benchmark reports, matching_scaling.json
    <root>/<dataset>/results.csv                the dataset's results table (compare.results)
    <root>/<dataset>/classical/<run name>/      LOMO+XQDA runs (classical.pipeline)
    <root>/<dataset>/deep/<model>/<variant>_seed<k>/   CNN runs (deep.train)
    <root>/<dataset>/deep/teacher_cache/        distillation teacher outputs (deep.teacher)
    <root>/<dataset>/cache/lomo/                LOMO features (classical.features)
    <root>/<dataset>/cache/throughput.json      batch throughput (compare)
    <root>/<dataset>/sweep/                     distillation sweeps (deep.distill)
    <root>/<dataset>/<report>                   tradeoff.md, the plot, distill.md

The object is frozen and its methods are pure: naming a path creates nothing; the code that
writes a file makes its folder (``data.io`` writers do). Commands build it once from ``--runs-dir``
or the environment (:func:`add_runs_dir_argument`, :func:`layout_from_args`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from data.paths import RUNS_ENV, runs_dir


@dataclass(frozen=True)
class RunsLayout:
    """Every path of the runs tree under ``root`` (see the module docstring)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RunsLayout:
        """``$REID_RUNS_DIR``, else the repository's ``runs/``."""
        return cls(runs_dir(environ))

    @classmethod
    def at(cls, root: Path | str | None) -> RunsLayout:
        """The layout at ``root``; None means the environment's (:meth:`from_env`)."""
        return cls.from_env() if root is None or str(root) == "" else cls(Path(root))

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / dataset

    def results_table(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "results.csv"

    def classical_dir(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "classical"

    def classical_run(self, dataset: str, name: str) -> Path:
        return self.classical_dir(dataset) / name

    def deep_dir(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "deep"

    def cnn_run(self, dataset: str, model: str, variant: str, seed: int) -> Path:
        return self.deep_dir(dataset) / model / f"{variant}_seed{seed}"

    def teacher_cache(self, dataset: str, name: str) -> Path:
        return self.deep_dir(dataset) / "teacher_cache" / name

    def lomo_cache(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "cache" / "lomo"

    @classmethod
    def lomo_cache_of(cls, classical_run: Path | str) -> Path:
        """The LOMO cache of the runs tree and dataset a classical run folder belongs to
        (``<root>/<dataset>/classical/<name>``), for code that holds the run but not its tree."""
        run = Path(classical_run)
        return cls(run.parents[2]).lomo_cache(run.parents[1].name)

    def throughput_cache(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "cache" / "throughput.json"

    def scaling_cache(self) -> Path:
        return self.bench_report("matching_scaling.json")

    def sweep_dir(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / "sweep"

    def report(self, dataset: str, name: str) -> Path:
        return self.dataset_dir(dataset) / name

    def bench_report(self, name: str) -> Path:
        return self.root / "bench" / name

    def holds(self, run_dir: Path | str, tree: Path) -> bool:
        """Whether ``run_dir`` lies under ``tree`` (``classical_dir`` or ``deep_dir`` of a
        dataset): only the study's own runs enter the shared results table by default."""
        return Path(run_dir).resolve().is_relative_to(Path(tree).resolve())


def add_runs_dir_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--runs-dir`` flag every command takes."""
    parser.add_argument(
        "--runs-dir",
        default=None,
        help=f"root of the runs tree: results tables, run folders, caches (default: ${RUNS_ENV}, "
        "else runs/)",
    )


def layout_from_args(args: argparse.Namespace) -> RunsLayout:
    """The layout of a parsed command line: ``--runs-dir``, else the environment's."""
    return RunsLayout.at(getattr(args, "runs_dir", None))
