"""The results table: one tidy CSV per dataset (:meth:`data.runs.RunsLayout.results_table`).

One row per evaluated (pipeline, model, variant, seed, input size, engine, initialisation): a CNN
run timed on three inference engines has three rows (``engine`` = ``torch``, ``onnxruntime``,
``openvino``), the classical pipeline one (``engine`` = ``numba``). ``init`` says how a CNN was
initialised before training (``scratch``, ``pretrained`` = a shipped backbone, or ``imagenet``;
``n/a`` for the classical pipeline).
Tables written before these columns existed are read with them filled in (``torch`` / ``numba``,
``scratch`` / ``n/a``: every earlier CNN was eager PyTorch and trained from scratch). Every
pipeline writes its rows with :func:`upsert_rows`, which replaces rows with the same key instead
of duplicating them and writes atomically (temporary file + rename), so an interrupted run never
leaves a broken table.
Accuracy columns are percentages (0-100); times are milliseconds.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pandas as pd

from data.io import OutputError, atomic_write_text, check_writable, remove_orphan_temporaries
from data.paths import REPO_ROOT

KEY_COLUMNS = (
    "dataset",
    "pipeline",
    "model",
    "variant",
    "seed",
    "input_size",
    "engine",
    "init",
    "rerank",
)
#: Engine of rows that do not name one: what each pipeline ran on before engines were recorded.
DEFAULT_ENGINE = {"classical": "numba", "deep": "torch"}
#: Initialisation of rows that do not name one.
DEFAULT_INIT = {"classical": "n/a", "deep": "scratch"}


@dataclass
class ResultRow:
    """One evaluated pipeline; see the module docstring for units."""

    dataset: str
    pipeline: str  # "classical" | "deep"
    model: str  # "lomo_xqda", "resnet50", "mobilenet_v1_0.25", ...
    variant: str  # "classical" | "baseline" | "distilled"
    seed: int
    input_size: str  # "HxW"
    params: int
    gflops: float
    embedding_dim: int
    rank1: float
    rank5: float
    rank10: float
    mAP: float
    mAP_torchreid: float
    ms_extract: float
    ms_match: float
    ms_query: float
    ms_query_p90: float
    threads: int
    device: str = "cpu"
    engine: str = ""  # "" = DEFAULT_ENGINE of the pipeline ("torch" / "numba")
    init: str = ""  # "" = DEFAULT_INIT of the pipeline ("scratch" / "n/a")
    rerank: str = "none"  # "none" | "online" (k-reciprocal re-ranking, compare.reranking)
    git_commit: str = field(default_factory=lambda: git_commit())
    date: str = field(default_factory=lambda: now_iso())
    run_dir: str = ""
    extra: str = "{}"  # JSON: anything else (T, alpha, epochs, engine options, ...)

    def __post_init__(self) -> None:
        if not self.engine:
            self.engine = DEFAULT_ENGINE.get(self.pipeline, "")
        if not self.init:
            self.init = DEFAULT_INIT.get(self.pipeline, "")


RESULT_COLUMNS = tuple(f.name for f in fields(ResultRow))


def git_commit(repo: Path | None = None) -> str:
    """Short hash of HEAD (with "+dirty" for local changes), or "unknown" outside git."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "") if head else "unknown"


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def extra_json(**values) -> str:
    return json.dumps(values, sort_keys=True)


@dataclass(frozen=True)
class RowExtra:
    """The typed view of a row's ``extra`` JSON: the fields ``compare`` reads back (the other
    keys are for people reading the table)."""

    feature_dim: int | None = None  # classical: the raw LOMO dimension before XQDA
    xqda_dim: int | None = None  # classical: the XQDA subspace dimension
    retinex: bool = False  # classical: MSRCR preprocessing
    engine_options: dict | None = None  # CNN: the inference engine's settings

    @classmethod
    def parse(cls, text: object) -> RowExtra:
        """The fields of ``extra`` (a JSON object; anything else, or NaN, gives the defaults)."""
        try:
            values = json.loads(str(text))
        except ValueError:
            return cls()
        if not isinstance(values, dict):
            return cls()
        dim = lambda key: None if values.get(key) is None else int(values[key])  # noqa: E731
        options = values.get("engine_options")
        return cls(
            feature_dim=dim("feature_dim"),
            xqda_dim=dim("xqda_dim"),
            retinex=bool(values.get("retinex", False)),
            engine_options=options if isinstance(options, dict) else None,
        )


def repo_relative(path: Path | str) -> str:
    """``path`` relative to the repository when inside it (the ``run_dir`` column), else as is."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


class ResultsTableError(ValueError):
    """A results table that cannot be read or written (a folder, garbage, a cut-off row)."""


def _check_rows(path: Path) -> None:
    """Every row has the header's number of fields: a row cut off mid-way (a copy interrupted,
    a disk that filled up) must not be read as a row of NaNs."""
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return
            for number, row in enumerate(reader, start=2):
                if row and len(row) != len(header):
                    raise ResultsTableError(
                        f"results table {path}, line {number}: {len(row)} fields where the "
                        f"header has {len(header)} (cut off or not a results table); repair or "
                        "move the file away"
                    )
    except (UnicodeDecodeError, csv.Error) as err:
        raise ResultsTableError(f"results table {path} is not a CSV file: {err}") from None


def check_table(path: Path | str) -> None:
    """Fail now, before any work, if the results table at ``path`` could not be updated later:
    it is a folder, unreadable, malformed, or its folder cannot be written."""
    path = Path(path)
    # a rewrite killed by kill -9 left its temporary (a live writer's is kept: it holds a lock)
    remove_orphan_temporaries(path.parent, [path.name])
    if path.exists():
        if not path.is_file():
            raise ResultsTableError(f"results table {path} is a folder, not a file")
        _read_for_update(path)
    try:
        check_writable(path.parent)
    except OutputError as err:
        raise OutputError(f"cannot write the results table {path} ({err})") from err


def read_results(path: Path | str) -> pd.DataFrame:
    """Read and validate a results table; clear errors name the file and the problem."""
    path = Path(path)
    if path.is_dir():
        raise ResultsTableError(f"results table {path} is a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"results table not found: {path}")
    _check_rows(path)
    try:
        df = pd.read_csv(
            path,
            dtype={"git_commit": str, "extra": str, "engine": str, "init": str, "rerank": str},
        )
    except pd.errors.EmptyDataError:
        raise ValueError(f"results table {path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ResultsTableError(f"results table {path} is not a CSV file: {err}") from None
    df = fill_defaults(df)
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsTableError(
            f"results table {path} lacks columns {missing} (not a results table?)"
        )
    if df.empty:
        raise ValueError(f"results table {path} has a header but no rows")
    return df


def fill_defaults(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``engine``, ``init`` and ``rerank`` filled where absent (older tables) or empty.

    Missing values get :data:`DEFAULT_ENGINE` / :data:`DEFAULT_INIT` of the row's pipeline, and
    ``rerank`` "none" (rows written before re-ranking existed are plain).
    Returns a copy when something was filled, ``df`` itself otherwise.
    """
    if "pipeline" not in df.columns:
        return df
    out = df
    plain = dict.fromkeys(set(DEFAULT_ENGINE) | set(out.pipeline.astype(str)), "none")
    for column, defaults in (("engine", DEFAULT_ENGINE), ("init", DEFAULT_INIT), ("rerank", plain)):
        values = out[column] if column in out.columns else pd.Series(pd.NA, index=out.index)
        empty = values.isna() | (values.astype(str).str.strip() == "")
        if column in out.columns and not empty.any():
            continue
        filled = out.pipeline.map(defaults).fillna("")
        out = out.copy() if out is df else out
        out[column] = values.astype(object).where(~empty, filled).astype(str)
    return out


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.<name>-lock`` next to ``path`` (no-op without fcntl).

    Parallel training jobs upsert into the same table: the lock makes each read-modify-write
    whole, so no job's rows are lost to another job's concurrent rewrite.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot write the results table {path}: {err.strerror or err}") from err
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(open(path.with_name(f".{path.name}-lock"), "a"))
        except OSError as err:
            raise OutputError(
                f"cannot write the results table {path}: {err.strerror or err}"
            ) from err
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upsert_rows(path: Path | str, rows: list[ResultRow]) -> pd.DataFrame:
    """Add ``rows`` to the table at ``path``, replacing rows with the same key; atomic.

    The key is :data:`KEY_COLUMNS` (dataset, pipeline, model, variant, seed, input size,
    engine, initialisation, re-ranking). The
    table is rewritten through a temporary file and a rename, under a lock file, so concurrent
    writers neither corrupt it nor lose each other's rows. Returns the new table.
    """
    path = Path(path)
    if not rows:
        raise ValueError("upsert_rows needs at least one row")
    bad = [type(r).__name__ for r in rows if not isinstance(r, ResultRow)]
    if bad:
        raise TypeError(f"upsert_rows takes ResultRow objects, got {sorted(set(bad))}")
    new = pd.DataFrame([asdict(r) for r in rows], columns=list(RESULT_COLUMNS))
    new_keys = _keys(new)
    if new_keys.duplicated().any():
        raise ValueError(
            f"rows with the same key passed twice: {sorted(new_keys[new_keys.duplicated()])}"
        )
    with _exclusive(path):
        old = _read_for_update(path)
        if old is not None:
            old = old[~_keys(old).isin(set(new_keys))]
            table = pd.concat([old[list(RESULT_COLUMNS)], new], ignore_index=True)
        else:
            table = new
        table = table.sort_values(list(KEY_COLUMNS), kind="stable").reset_index(drop=True)
        atomic_write_text(path, table.to_csv(index=False))
    return table


def _keys(df: pd.DataFrame) -> pd.Series:
    return df[list(KEY_COLUMNS)].astype(str).agg("|".join, axis=1)


def _read_for_update(path: Path) -> pd.DataFrame | None:
    """The current table, None when there is none yet (missing, or only a header)."""
    if not path.exists():
        return None
    try:
        return read_results(path)
    except ValueError as err:
        if "no rows" in str(err):
            return None
        raise
