"""Liao's classical benchmarks in their original releases: VIPeR, CUHK01 and CUHK03.

Each is a set of persons seen by two cameras, camera A (the gallery view) and camera B (the probe
view), evaluated over several train/test splits ("trials"), as in Liao et al. (CVPR 2015):

``viper``
    The original release: ``cam_a/*.bmp`` and ``cam_b/*.bmp``, 632 persons; the images of
    ``cam_a`` and ``cam_b`` with the same person number (the name before ``_``) are one person;
    a number in one camera only is an error. 10 random 316/316 splits.
``cuhk01``
    The original ``campus/`` folder (or the folder itself) of ``PPPPNNN.png``: person ``PPPP``
    (971 persons), image ``NNN`` 001-002 from camera A and 003-004 from camera B. 10 random
    485/486 splits.
``cuhk03``, ``cuhk03-detected``
    The original ``cuhk-03.mat`` (MATLAB v7.3, an HDF5 file, read with h5py; found at
    ``ROOT/cuhk-03.mat`` or ``ROOT/cuhk03_release/cuhk-03.mat``), hand-labelled or detected
    boxes. The old protocol: its ``testsets`` hold the 20 published splits of 100 test persons;
    training uses every other person. Camera pair ``p``, person ``n`` (both 1-based) gets the id
    ``1000 * p + n``.
``cuhk03-new``, ``cuhk03-detected-new``
    The new protocol of Zhong et al. (CVPR 2017), 767 training and 700 test persons, read from
    ``ROOT/cuhk03_new_protocol_config_labeled.mat`` / ``_detected.mat`` (MATLAB v5: ``filelist``,
    ``labels``, ``camId``, ``train_idx``, ``query_idx``, ``gallery_idx``, 1-based) and evaluated
    with the Market-1501 protocol. It is a plain train/query/gallery dataset, no trials.

CUHK03 images are read from ``ROOT/images_labeled/`` (``images_detected/``) when that folder
exists: the PNG files ``P_NNN_C_II.png`` (camera pair, person, camera 1 or 2, image 01-10) that
the usual extraction of ``cuhk-03.mat`` writes, and that the new protocol's ``filelist`` names.
Otherwise they are extracted once from ``cuhk-03.mat`` into
``datasets/cuhk03-extracted/<key>/images_<kind>/`` (the data root is never written to; ``<key>``
follows the .mat file's path, size and date) with the same names; ``python -m data.benchmarks
extract-cuhk03 ROOT/cuhk-03.mat OUT`` does it by hand.

Trials (:class:`Trial`) are seeded and recorded: trial ``t`` of a random split draws its persons
with ``numpy.random.default_rng([seed + t, 0])``; in single-shot mode it picks one image per test
person and camera with ``default_rng([seed + t, 1])``. Training always uses every image of the
training persons in both cameras; the shots concern the test persons:

* ``single-shot``: one image per test person and camera; a 1-to-1 ranking.
* ``multi-shot``: every image; the distance between two persons is the mean of their image-pair
  distances (``data.protocols.set_distances``).

Every benchmark is also a registered layout (:func:`data.layouts.load_dataset`), so the deep
pipeline trains on it: the layout is trial 0 with every image (train = its training persons,
query = their test persons' camera-B images, gallery = camera-A images), evaluated with the
Market-1501 code (no same-camera junk: queries and gallery are in different cameras).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data import paths
from data.cli import entry_point
from data.layouts import (
    SHOW_FIRST,
    Record,
    ReidDataset,
    list_images,
    register_layout,
    relabel,
    warn_unmatched_queries,
)

log = logging.getLogger(__name__)

#: Two-view protocols (the Market-1501 evaluation is ``"market"``, see classical.pipeline).
SHOTS = ("single-shot", "multi-shot")
#: Camera ids: camera A is the gallery view, camera B the probe view.
CAMERA_A, CAMERA_B = 0, 1
CUHK03_KINDS = ("labeled", "detected")
CUHK03_MAT_NAMES = ("cuhk-03.mat", "cuhk03_release/cuhk-03.mat")
#: Id of camera pair p, person n in CUHK03 (both 1-based): 1000 * p + n (pairs hold <= 843).
CUHK03_PAIR_STRIDE = 1000


@dataclass(frozen=True)
class PublishedFigure:
    """A published LOMO + XQDA result to print beside ours."""

    rank1: float
    source: str
    persons: int  # persons in the original release, for the comparability note


#: Liao et al., "Person re-identification by Local Maximal Occurrence representation and metric
#: learning", CVPR 2015: LOMO + XQDA rank-1 (%), per (benchmark, protocol).
LIAO_LOMO_XQDA: dict[tuple[str, str], PublishedFigure] = {
    ("viper", "single-shot"): PublishedFigure(
        40.00, "Liao et al. CVPR 2015, VIPeR 316 test persons, single-shot", 632
    ),
    ("cuhk01", "multi-shot"): PublishedFigure(
        63.21, "Liao et al. CVPR 2015, CUHK01 486 test persons, multi-shot", 971
    ),
    ("cuhk03", "single-shot"): PublishedFigure(
        52.20, "Liao et al. CVPR 2015, CUHK03 labeled, 20 published splits, single-shot", 1467
    ),
    ("cuhk03-detected", "single-shot"): PublishedFigure(
        46.25, "Liao et al. CVPR 2015, CUHK03 detected, 20 published splits, single-shot", 1467
    ),
}


def published_figure(benchmark: str, protocol: str) -> PublishedFigure | None:
    """Liao's LOMO + XQDA rank-1 for ``benchmark`` under ``protocol``, or None."""
    return LIAO_LOMO_XQDA.get((canonical_name(benchmark), protocol))


# ---------------------------------------------------------------------------------------------
# Persons, trials, benchmarks
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Person:
    """One person's images in camera A (gallery view) and camera B (probe view)."""

    pid: int
    gallery: tuple[Path, ...]
    probe: tuple[Path, ...]


@dataclass(frozen=True)
class Trial:
    """One train/test split of a two-view benchmark.

    Attributes
    ----------
    index : int
        0-based trial number.
    seed : int
        Seeds this trial's random draws (the split, when random, and the single-shot images).
    train_pids, test_pids : tuple of int
        Original person ids, sorted.
    dropped_pids : tuple of int
        Test persons of the published split left out for lacking an image in one camera.
    """

    index: int
    seed: int
    train_pids: tuple[int, ...]
    test_pids: tuple[int, ...]
    dropped_pids: tuple[int, ...] = ()

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "seed": self.seed,
            "train_pids": list(self.train_pids),
            "test_pids": list(self.test_pids),
            "dropped_pids": list(self.dropped_pids),
        }


@dataclass
class TwoViewBenchmark:
    """Persons seen by two cameras, and the trials of the benchmark's protocol.

    Attributes
    ----------
    name : str
        Layout name (``"viper"``, ``"cuhk01"``, ``"cuhk03"``, ``"cuhk03-detected"``).
    root : Path
        The data root given.
    persons : tuple of Person
        Sorted by id.
    trials : tuple of Trial
    split : str
        How the trials were made (printed and recorded).
    original_persons : int
        Persons in the original release (VIPeR 632, CUHK01 971, CUHK03 1467).
    """

    name: str
    root: Path
    persons: tuple[Person, ...]
    trials: tuple[Trial, ...]
    split: str
    original_persons: int
    _by_pid: dict[int, Person] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_pid = {p.pid: p for p in self.persons}

    @property
    def num_images(self) -> int:
        return sum(len(p.gallery) + len(p.probe) for p in self.persons)

    def records(self) -> list[Record]:
        """Every image once (per person: camera A, then camera B), with original ids."""
        out: list[Record] = []
        for person in self.persons:
            out += [Record(path, person.pid, CAMERA_A) for path in person.gallery]
            out += [Record(path, person.pid, CAMERA_B) for path in person.probe]
        return out

    def trial(self, index: int) -> Trial:
        if not 0 <= index < len(self.trials):
            raise ValueError(f"{self.name} has trials 0..{len(self.trials) - 1}, got {index}")
        return self.trials[index]

    def test_images(self, trial: Trial | int, shots: str) -> tuple[list[Record], list[Record]]:
        """(probes, gallery) of a trial's test persons: camera B and camera A records."""
        trial = self.trial(trial) if isinstance(trial, int) else trial
        if shots not in SHOTS:
            raise ValueError(f"shots must be one of {SHOTS}, got {shots!r}")
        rng = np.random.default_rng([trial.seed, 1])
        probes: list[Record] = []
        gallery: list[Record] = []
        for pid in trial.test_pids:
            person = self._by_pid[pid]
            if shots == "single-shot":
                # one draw per camera, in person order: recorded by (seed, index)
                g = person.gallery[int(rng.integers(len(person.gallery)))]
                p = person.probe[int(rng.integers(len(person.probe)))]
                gallery.append(Record(g, pid, CAMERA_A))
                probes.append(Record(p, pid, CAMERA_B))
            else:
                gallery += [Record(path, pid, CAMERA_A) for path in person.gallery]
                probes += [Record(path, pid, CAMERA_B) for path in person.probe]
        return probes, gallery

    def train_images(self, trial: Trial | int) -> list[Record]:
        """Every image of a trial's training persons (original ids; cameras 0 = A, 1 = B)."""
        trial = self.trial(trial) if isinstance(trial, int) else trial
        out: list[Record] = []
        for pid in trial.train_pids:
            person = self._by_pid[pid]
            out += [Record(path, pid, CAMERA_A) for path in person.gallery]
            out += [Record(path, pid, CAMERA_B) for path in person.probe]
        return out

    def trial_dataset(self, trial: Trial | int = 0, shots: str = "multi-shot") -> ReidDataset:
        """A trial as a :class:`ReidDataset`: train relabelled, query camera B, gallery camera A."""
        trial = self.trial(trial) if isinstance(trial, int) else trial
        train, mapping = relabel(self.train_images(trial))
        query, gallery = self.test_images(trial, shots)
        return ReidDataset(self.name, self.root, train, query, gallery, mapping)


def random_trials(
    pids: Sequence[int], num_train: int, num_trials: int, seed: int
) -> tuple[Trial, ...]:
    """``num_trials`` random splits: ``num_train`` training persons, the rest for the test.

    Trial ``t`` permutes the sorted ids with ``numpy.random.default_rng([seed + t, 0])``.
    """
    ids = np.array(sorted(pids), dtype=np.int64)
    if not 2 <= num_train <= len(ids) - 2:
        raise ValueError(
            f"need at least 2 training and 2 test persons; got {len(ids)} persons and "
            f"{num_train} for training"
        )
    trials = []
    for t in range(num_trials):
        order = np.random.default_rng([seed + t, 0]).permutation(len(ids))
        train = tuple(sorted(int(v) for v in ids[order[:num_train]]))
        test = tuple(sorted(int(v) for v in ids[order[num_train:]]))
        trials.append(Trial(t, seed + t, train, test))
    return tuple(trials)


def _num_trials(requested: int | None, default: int, available: int | None = None) -> int:
    if requested is None:
        return default
    if not isinstance(requested, int | np.integer) or requested < 1:
        raise ValueError(f"num_trials must be a positive integer, got {requested!r}")
    if available is not None and requested > available:
        raise ValueError(f"num_trials={requested} but only {available} splits are published")
    return int(requested)


def _half_split_benchmark(
    name: str,
    root: Path,
    persons: tuple[Person, ...],
    original: int,
    num_trials: int | None,
    seed: int,
) -> TwoViewBenchmark:
    """VIPeR's and CUHK01's protocol: 10 random splits of the persons in halves (seeded)."""
    _warn_size(name, len(persons), original)
    n = _num_trials(num_trials, 10)
    trials = random_trials([p.pid for p in persons], len(persons) // 2, n, seed)
    split = f"{n} random {len(persons) // 2}/{len(persons) - len(persons) // 2} splits, seeds "
    split += f"{seed}..{seed + n - 1}"
    return TwoViewBenchmark(name, root, persons, trials, split, original)


def _warn_size(name: str, n: int, original: int) -> None:
    if n != original:
        log.warning(
            "%s: %d persons, the original release has %d; published figures are not comparable",
            name,
            n,
            original,
        )


# ---------------------------------------------------------------------------------------------
# VIPeR
# ---------------------------------------------------------------------------------------------
VIPER_PERSONS = 632
CUHK01_PERSONS = 971
CUHK03_PERSONS = 1467


def _check_dir(name: str, root: Path | str) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root for {name!r} not found: {root}")
    return root


def load_viper(
    root: Path | str, *, num_trials: int | None = None, seed: int = 0
) -> TwoViewBenchmark:
    """VIPeR from ``ROOT/cam_a`` and ``ROOT/cam_b``; 10 random 316/316 splits by default."""
    root = _check_dir("viper", root)
    folders = [root / "cam_a", root / "cam_b"]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise FileNotFoundError(
            f"VIPeR root {root} lacks {missing}; expected the original release's cam_a/ and cam_b/"
        )
    cam_a, cam_b = (_viper_by_person(list_images(f), f) for f in folders)
    if cam_a.keys() != cam_b.keys():
        only_a, only_b = sorted(cam_a.keys() - cam_b.keys()), sorted(cam_b.keys() - cam_a.keys())
        raise ValueError(
            "VIPeR pairs a cam_a and a cam_b image by their name's person number (before '_'), "
            f"but {folders[0]} has {len(cam_a)} images and {folders[1]} has {len(cam_b)}; "
            f"only in cam_a: {only_a[:SHOW_FIRST]}, only in cam_b: {only_b[:SHOW_FIRST]}"
        )
    persons = tuple(
        Person(i + 1, (cam_a[key],), (cam_b[key],)) for i, key in enumerate(sorted(cam_a))
    )
    return _half_split_benchmark("viper", root, persons, VIPER_PERSONS, num_trials, seed)


def _viper_by_person(images: list[Path], folder: Path) -> dict[str, Path]:
    """``{person number: image}`` of one VIPeR camera (``000_45.bmp`` is person ``000``)."""
    by_person: dict[str, Path] = {}
    for path in images:
        key = path.name.split("_", 1)[0]
        if "_" not in path.name or not key.isdigit():
            raise ValueError(f"VIPeR image {path} is not named <person number>_<angle>.<ext>")
        if key in by_person:
            raise ValueError(
                f"{folder} has two images of person {key}: {by_person[key].name}, {path.name}"
            )
        by_person[key] = path
    return by_person


# ---------------------------------------------------------------------------------------------
# CUHK01
# ---------------------------------------------------------------------------------------------
_CUHK01_RE = re.compile(r"^(\d{4})(\d{3})\.\w+$")


def parse_cuhk01_name(name: str) -> tuple[int, int] | None:
    """CUHK01: ``0001003.png`` -> (person 1, camera 1 = B); None when the name does not parse."""
    match = _CUHK01_RE.match(name)
    if match is None:
        return None
    pid, number = int(match.group(1)), int(match.group(2))
    if pid < 1 or not 1 <= number <= 4:
        return None
    return pid, CAMERA_A if number <= 2 else CAMERA_B


def load_cuhk01(
    root: Path | str, *, num_trials: int | None = None, seed: int = 0
) -> TwoViewBenchmark:
    """CUHK01 from ``ROOT/campus`` (or ``ROOT`` itself); 10 random 485/486 splits by default."""
    root = _check_dir("cuhk01", root)
    folder = root / "campus" if (root / "campus").is_dir() else root
    images = list_images(folder)
    views: dict[int, tuple[list[Path], list[Path]]] = {}
    bad = []
    for path in images:
        parsed = parse_cuhk01_name(path.name)
        if parsed is None:
            bad.append(path.name)
            continue
        views.setdefault(parsed[0], ([], []))[parsed[1]].append(path)
    if bad:
        raise ValueError(
            f"{len(bad)} file name(s) in {folder} are not CUHK01's PPPPNNN.png (person PPPP, "
            f"image NNN 001-004), e.g. {bad[:SHOW_FIRST]}"
        )
    one_view = [pid for pid, (a, b) in sorted(views.items()) if not a or not b]
    if one_view:
        raise ValueError(
            f"{len(one_view)} person(s) in {folder} lack images in camera A (001-002) or camera B "
            f"(003-004), e.g. {one_view[:SHOW_FIRST]}"
        )
    persons = tuple(Person(pid, tuple(a), tuple(b)) for pid, (a, b) in sorted(views.items()))
    return _half_split_benchmark("cuhk01", root, persons, CUHK01_PERSONS, num_trials, seed)


# ---------------------------------------------------------------------------------------------
# CUHK03: cuhk-03.mat (MATLAB v7.3 = HDF5)
# ---------------------------------------------------------------------------------------------
_CUHK03_RE = re.compile(r"^(\d+)_(\d+)_([12])_(\d+)\.\w+$")


def parse_cuhk03_name(name: str) -> tuple[int, int, int] | None:
    """``1_001_2_06.png`` -> (pair 1, person 1, camera 1 = B); None when it does not parse."""
    match = _CUHK03_RE.match(name)
    if match is None:
        return None
    pair, person, camera = (int(match.group(i)) for i in (1, 2, 3))
    if pair < 1 or not 1 <= person < CUHK03_PAIR_STRIDE:
        return None
    return pair, person, camera - 1


def cuhk03_pid(pair: int, person: int) -> int:
    """Id of camera pair ``pair``, person ``person`` (both 1-based)."""
    return CUHK03_PAIR_STRIDE * int(pair) + int(person)


def _kind(kind: str) -> str:
    if kind not in CUHK03_KINDS:
        raise ValueError(f"CUHK03 images must be one of {CUHK03_KINDS}, got {kind!r}")
    return kind


def find_cuhk03_mat(root: Path | str) -> Path:
    """``ROOT/cuhk-03.mat`` or ``ROOT/cuhk03_release/cuhk-03.mat``."""
    root = Path(root).expanduser()
    for name in CUHK03_MAT_NAMES:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"CUHK03: no cuhk-03.mat in {root} (looked for {[str(root / n) for n in CUHK03_MAT_NAMES]})"
    )


def _open_mat(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(
            f"{path} is not a MATLAB v7.3 (HDF5) file, as the original cuhk-03.mat is: {err}"
        ) from None


def _require_keys(handle, path: Path, keys: Sequence[str]) -> None:
    missing = [k for k in keys if k not in handle]
    if missing:
        raise ValueError(
            f"{path} lacks {missing} (it has {sorted(handle.keys())}); expected the original "
            "cuhk-03.mat with 'labeled', 'detected' and 'testsets'"
        )


def _cell(handle, obj, path: Path, what: str) -> np.ndarray:
    """Object references of a MATLAB cell array, as stored (HDF5 order, MATLAB's reversed)."""
    import h5py

    if not isinstance(obj, h5py.Dataset) or obj.dtype != h5py.ref_dtype:
        raise ValueError(f"{path}: {what} is not a MATLAB cell array of references")
    return obj[()]


def _deref(handle, ref, path: Path, what: str):
    try:
        return handle[ref]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: {what} holds a broken reference ({err})") from None


def _matlab_image(array: np.ndarray, path: Path, what: str) -> np.ndarray | None:
    """An image stored by MATLAB (3 x W x H in HDF5 order) as H x W x 3; None for an empty cell."""
    if array.ndim != 3 or array.size == 0:
        return None  # empty cells are stored as tiny 1-D arrays (MATLAB_empty)
    if array.shape[0] == 3:
        image = array.transpose(2, 1, 0)
    elif array.shape[2] == 3:
        image = array.transpose(1, 0, 2)
    else:
        raise ValueError(f"{path}: {what} has shape {array.shape}, not an RGB image")
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: {what} has dtype {image.dtype}, expected uint8")
    return np.ascontiguousarray(image)


def read_cuhk03_testsets(mat: Path | str) -> list[np.ndarray]:
    """The published splits: per trial a (100, 2) int array of (camera pair, person), 1-based."""
    mat = Path(mat)
    with _open_mat(mat) as handle:
        _require_keys(handle, mat, ["testsets"])
        refs = _cell(handle, handle["testsets"], mat, "'testsets'").ravel()
        out = []
        for t, ref in enumerate(refs):
            array = np.asarray(_deref(handle, ref, mat, f"testsets{{{t + 1}}}")[()])
            if array.ndim == 2 and (array.shape[0] == 2 or array.shape[1] != 2):
                array = array.T  # MATLAB's (n x 2) is stored as (2 x n)
            if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
                raise ValueError(
                    f"{mat}: testsets{{{t + 1}}} has shape {array.shape}, expected (n, 2) rows of "
                    "(camera pair, person)"
                )
            out.append(np.rint(array).astype(np.int64))
    if not out:
        raise ValueError(f"{mat}: 'testsets' is empty")
    return out


def _mat_key(mat: Path) -> str:
    stat = mat.stat()
    text = f"{mat.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def extract_cuhk03_images(mat: Path | str, kind: str, out_dir: Path | str) -> int:
    """Write the ``kind`` images of ``cuhk-03.mat`` as ``out_dir/P_NNN_C_II.png``; returns count.

    ``P`` camera pair (1-based), ``NNN`` person (1-based), ``C`` camera (1: columns 1-5 of the
    person's row, 2: columns 6-10), ``II`` column (01-10). Empty cells are skipped. The folder
    appears complete or not at all (written next to it, then renamed).
    """
    import cv2

    mat, out_dir, kind = Path(mat), Path(out_dir), _kind(kind)
    if not mat.is_file():
        raise FileNotFoundError(f"CUHK03: {mat} not found")
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; remove it to extract again")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    count = 0
    try:
        with _open_mat(mat) as handle:
            _require_keys(handle, mat, [kind])
            pairs = _cell(handle, handle[kind], mat, f"'{kind}'").ravel()
            for p, pair_ref in enumerate(pairs, start=1):
                what = f"{kind}{{{p}}}"
                cells = _cell(handle, _deref(handle, pair_ref, mat, what), mat, what)
                if cells.ndim != 2 or 10 not in cells.shape:
                    raise ValueError(
                        f"{mat}: {what} has shape {cells.shape}; expected persons x 10 images"
                    )
                if cells.shape[0] == 10:
                    cells = cells.T  # MATLAB's (persons x 10) is stored as (10 x persons)
                for n, row in enumerate(cells, start=1):
                    for j, ref in enumerate(row, start=1):
                        where = f"{what}{{{n}, {j}}}"
                        image = _matlab_image(_deref(handle, ref, mat, where)[()], mat, where)
                        if image is None:
                            continue
                        camera = 1 if j <= 5 else 2
                        name = f"{p}_{n:03d}_{camera}_{j:02d}.png"
                        ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                        if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
                            raise ValueError(f"could not encode {where} of {mat} as PNG")
                        (tmp / name).write_bytes(buf.tobytes())
                        count += 1
        if count == 0:
            raise ValueError(f"{mat}: '{kind}' holds no images")
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return count


def cuhk03_image_dir(root: Path | str, kind: str) -> Path:
    """``ROOT/images_<kind>`` if present, else the images extracted once from ``cuhk-03.mat``."""
    root, kind = Path(root).expanduser(), _kind(kind)
    given = root / f"images_{kind}"
    if given.is_dir():
        return given
    try:
        mat = find_cuhk03_mat(root)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"CUHK03: neither {given} nor cuhk-03.mat (in {root} or {root / 'cuhk03_release'}) "
            "found"
        ) from None
    out = paths.datasets_dir() / "cuhk03-extracted" / _mat_key(mat) / f"images_{kind}"
    if not out.is_dir():
        log.warning("extracting the %s images of %s into %s (once)", kind, mat, out)
        with contextlib.suppress(FileExistsError):  # another process finished it first
            extract_cuhk03_images(mat, kind, out)
        (out.parent / "source.json").write_text(json.dumps({"mat": str(mat.resolve())}))
    return out


def read_cuhk03_folder(folder: Path) -> dict[int, tuple[list[Path], list[Path]]]:
    """Person id -> (camera-1 images, camera-2 images) from ``P_NNN_C_II.png`` names."""
    views: dict[int, tuple[list[Path], list[Path]]] = {}
    bad = []
    for path in list_images(folder):
        parsed = parse_cuhk03_name(path.name)
        if parsed is None:
            bad.append(path.name)
            continue
        pair, person, camera = parsed
        views.setdefault(cuhk03_pid(pair, person), ([], []))[camera].append(path)
    if bad:
        raise ValueError(
            f"{len(bad)} file name(s) in {folder} are not CUHK03's P_NNN_C_II.png (camera pair, "
            f"person, camera 1/2, image), e.g. {bad[:SHOW_FIRST]}"
        )
    return views


def load_cuhk03(
    root: Path | str,
    kind: str = "labeled",
    *,
    num_trials: int | None = None,
    seed: int = 0,
) -> TwoViewBenchmark:
    """CUHK03, old protocol: the 20 published test splits of ``cuhk-03.mat``'s ``testsets``."""
    root, kind = _check_dir("cuhk03", root), _kind(kind)
    name = "cuhk03" if kind == "labeled" else "cuhk03-detected"
    mat = find_cuhk03_mat(root)
    testsets = read_cuhk03_testsets(mat)
    views = read_cuhk03_folder(cuhk03_image_dir(root, kind))
    persons = tuple(Person(pid, tuple(a), tuple(b)) for pid, (a, b) in sorted(views.items()))
    _warn_size(name, len(persons), CUHK03_PERSONS)
    n = _num_trials(num_trials, len(testsets), len(testsets))
    known = {p.pid for p in persons}
    complete = {p.pid for p in persons if p.gallery and p.probe}
    trials = []
    for t in range(n):
        test = sorted({cuhk03_pid(pair, person) for pair, person in testsets[t]})
        unknown = [pid for pid in test if pid not in known]
        if unknown:
            raise ValueError(
                f"{mat}: testsets{{{t + 1}}} names persons without images, e.g. "
                f"{[divmod(pid, CUHK03_PAIR_STRIDE) for pid in unknown[:SHOW_FIRST]]} "
                "(camera pair, person)"
            )
        dropped = tuple(pid for pid in test if pid not in complete)
        if dropped:
            log.warning(
                "%s trial %d: %d test person(s) lack an image in one camera and are left out",
                name,
                t,
                len(dropped),
            )
        kept = tuple(pid for pid in test if pid in complete)
        train = tuple(sorted(known - set(test)))
        trials.append(Trial(t, seed + t, train, kept, dropped))
    split = f"the {n} published test splits of {mat.name} ('testsets'), training on the others"
    return TwoViewBenchmark(name, root, persons, tuple(trials), split, CUHK03_PERSONS)


# ---------------------------------------------------------------------------------------------
# CUHK03, new protocol (Zhong et al. 2017): cuhk03_new_protocol_config_<kind>.mat (MATLAB v5)
# ---------------------------------------------------------------------------------------------
NEW_PROTOCOL_KEYS = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")


def _strings(values: np.ndarray) -> list[str]:
    out = []
    for item in np.asarray(values, dtype=object).ravel():
        while isinstance(item, np.ndarray):
            item = item.ravel()[0] if item.size else ""
        out.append(str(item).strip())
    return out


SPLIT_KEYS = ("train_idx", "query_idx", "gallery_idx")


def _new_protocol_indices(values, key: str, count: int, config: Path) -> np.ndarray:
    """A split's 1-based indices into filelist; fractions, out-of-range values refused."""
    raw = np.asarray(values).ravel()
    if raw.size == 0 or not np.issubdtype(raw.dtype, np.number) or np.iscomplexobj(raw):
        raise ValueError(f"{config}: {key} must hold 1-based indices into filelist")
    bad = raw[~np.isfinite(raw) | (raw != np.round(raw))] if raw.dtype.kind == "f" else raw[:0]
    if bad.size:
        raise ValueError(
            f"{config}: {key} holds non-integer indices, e.g. {bad[:SHOW_FIRST].tolist()}"
        )
    idx = raw.astype(np.int64)
    if idx.min() < 1 or idx.max() > count:
        raise ValueError(f"{config}: {key} must hold 1-based indices into filelist (1..{count})")
    return idx


def load_cuhk03_new(root: Path | str, kind: str = "labeled") -> ReidDataset:
    """CUHK03 under the new protocol: 767 training / 700 test persons, Market-1501 evaluation."""
    import scipy.io

    root, kind = _check_dir("cuhk03-new", root), _kind(kind)
    name = "cuhk03-new" if kind == "labeled" else "cuhk03-detected-new"
    config = root / f"cuhk03_new_protocol_config_{kind}.mat"
    if not config.is_file():
        raise FileNotFoundError(f"CUHK03 new protocol: {config} not found")
    try:
        mat = scipy.io.loadmat(config)
    except (ValueError, OSError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise ValueError(f"{config} is not a readable MATLAB v5 file: {err}") from None
    missing = [k for k in NEW_PROTOCOL_KEYS if k not in mat]
    if missing:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{config} lacks {missing} (it has {found})")
    files = _strings(mat["filelist"])
    labels = np.asarray(mat["labels"]).ravel().astype(np.int64)
    cams = np.asarray(mat["camId"]).ravel().astype(np.int64)
    if not len(files) == len(labels) == len(cams):
        raise ValueError(
            f"{config}: filelist ({len(files)}), labels ({len(labels)}) and camId ({len(cams)}) "
            "differ in length"
        )
    if not np.isin(cams, (1, 2)).all():
        raise ValueError(f"{config}: camId must be 1 or 2, got {sorted(set(cams.tolist()))}")
    folder = cuhk03_image_dir(root, kind)
    missing_files = [f for f in files if not (folder / f).is_file()]
    if missing_files:
        raise FileNotFoundError(
            f"{len(missing_files)} image(s) of {config.name}'s filelist are not in {folder}, e.g. "
            f"{missing_files[:SHOW_FIRST]}"
        )
    records = [
        Record(folder / f, int(pid), int(cam) - 1)
        for f, pid, cam in zip(files, labels, cams, strict=True)
    ]

    idx = {key: _new_protocol_indices(mat[key], key, len(records), config) for key in SPLIT_KEYS}
    for test_key in ("query_idx", "gallery_idx"):
        shared = np.intersect1d(idx["train_idx"], idx[test_key])
        if shared.size:
            raise ValueError(
                f"{config}: {shared.size} image(s) are in both train_idx and {test_key} (test "
                f"images in the training set), e.g. filelist entries {shared[:SHOW_FIRST].tolist()}"
            )
    train, mapping = relabel([records[i - 1] for i in idx["train_idx"]])
    if len(mapping) < 2:
        raise ValueError(
            f"{config}: the labels of train_idx's {len(train)} images name {len(mapping)} "
            "identity; training needs at least 2"
        )
    query, gallery = ([records[i - 1] for i in idx[k]] for k in ("query_idx", "gallery_idx"))
    warn_unmatched_queries(query, gallery, config)
    return ReidDataset(name, root, train, query, gallery, mapping)


# ---------------------------------------------------------------------------------------------
# Registry: two-view benchmarks (with their default protocol) and layouts for load_dataset
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Benchmark:
    loader: Callable[..., TwoViewBenchmark]
    default_shots: str


_BENCHMARKS: dict[str, _Benchmark] = {}


def _key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "")


def canonical_name(name: str) -> str:
    """``"CUHK-03_detected"`` -> ``"cuhk03-detected"``; other names unchanged."""
    for known in (*_BENCHMARKS, "cuhk03-new", "cuhk03-detected-new"):
        if _key(known) == _key(name):
            return known
    return name


def is_two_view(name: str) -> bool:
    """Whether ``name`` is a two-view benchmark evaluated over trials (VIPeR, CUHK01, CUHK03)."""
    return canonical_name(name) in _BENCHMARKS


def two_view_names() -> list[str]:
    """The two-view benchmarks: ``cuhk01``, ``cuhk03``, ``cuhk03-detected``, ``viper``."""
    return sorted(_BENCHMARKS)


def default_shots(name: str) -> str:
    """The protocol Liao's published figure uses: multi-shot for CUHK01, else single-shot."""
    return _BENCHMARKS[_known(name)].default_shots


def _known(name: str) -> str:
    canonical = canonical_name(name)
    if canonical not in _BENCHMARKS:
        raise ValueError(f"{name!r} is not a two-view benchmark; known: {sorted(_BENCHMARKS)}")
    return canonical


def load_benchmark(
    name: str, root: Path | str, *, num_trials: int | None = None, seed: int = 0
) -> TwoViewBenchmark:
    """Load a two-view benchmark (``viper``, ``cuhk01``, ``cuhk03``, ``cuhk03-detected``).

    Parameters
    ----------
    name : str
        Benchmark name (case, ``-`` and ``_`` do not matter).
    root : path
        The original release's folder (see the module docstring).
    num_trials : int, optional
        Use the first ``num_trials`` trials (default: 10 for VIPeR and CUHK01, the 20 published
        splits for CUHK03).
    seed : int
        Trial ``t`` is seeded with ``seed + t``.
    """
    if root is None or str(root) == "":
        raise ValueError(f"dataset {name!r} needs a root folder (--data-root / DATA_ROOT)")
    return _BENCHMARKS[_known(name)].loader(Path(root), num_trials=num_trials, seed=seed)


def _register(name: str, loader: Callable[..., TwoViewBenchmark], shots: str) -> None:
    _BENCHMARKS[name] = _Benchmark(loader, shots)

    def layout(root: Path) -> ReidDataset:
        return loader(root, num_trials=1).trial_dataset(0, "multi-shot")

    layout.__doc__ = f"{name}: trial 0, every image (train persons / camera B / camera A)."
    register_layout(name)(layout)


def _cuhk03_detected(root: Path, **kwargs) -> TwoViewBenchmark:
    return load_cuhk03(root, "detected", **kwargs)


_register("viper", load_viper, "single-shot")
_register("cuhk01", load_cuhk01, "multi-shot")
_register("cuhk03", load_cuhk03, "single-shot")
_register("cuhk03-detected", _cuhk03_detected, "single-shot")
register_layout("cuhk03-new")(lambda root: load_cuhk03_new(root, "labeled"))
register_layout("cuhk03-detected-new")(lambda root: load_cuhk03_new(root, "detected"))


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark data tools")
    sub = parser.add_subparsers(dest="command", required=True)
    extract = sub.add_parser("extract-cuhk03", help="write cuhk-03.mat's images as PNG files")
    extract.add_argument("mat", help="path of cuhk-03.mat")
    extract.add_argument("out", help="folder to create (e.g. ROOT/images_labeled)")
    extract.add_argument(
        "--kind",
        choices=CUHK03_KINDS,
        default="labeled",
        help="which boxes to write: the hand-labelled or the detected ones (default labeled)",
    )
    args = parser.parse_args(argv)
    count = extract_cuhk03_images(args.mat, args.kind, args.out)
    print(f"wrote {count} {args.kind} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
