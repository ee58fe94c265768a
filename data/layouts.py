"""Dataset layouts: Market-1501, DukeMTMC-reID, a generic layout for your own data, synthetic data.

Every layout reads the same three folders under a root::

    bounding_box_train/   training images
    query/                query (probe) images
    bounding_box_test/    gallery images

and turns each into a list of :class:`Record` (path, person id, camera id). Training ids are
relabelled to ``0..N-1`` (sorted by the original id); query and gallery keep their original ids.
Gallery junk (id ``-1``) and distractors (id ``0``) are kept: :func:`data.protocols.evaluate`
handles them as the Market-1501 protocol says; training and query images with these ids are
dropped (they carry no identity to learn or to look for). Any other negative id, and any id
beyond the 64-bit range of the evaluation arrays (``MAX_ID``), is a :class:`DatasetError` naming
the files. Camera ids are 0-based (``c1`` becomes ``0``).

Adding a layout is one function plus one decorator line::

    @register_layout("mydata", default_root="/data/mydata")
    def _load_mydata(root: Path) -> ReidDataset:
        return read_three_folders("mydata", root, parse_market_name)

Generic layout (``"generic"``): file names ``<id>_c<cam>_<anything>.<ext>``; Market-1501 style
names (``0002_c1s1_000451_03.jpg``, camera 1) are understood too. The camera is read from each
file name. When *no* file of the three folders carries a camera (``<id>_<anything>.<ext>``), the
documented fallback is used: query images get camera 0, gallery images camera 1 (so no gallery
image is ignored as "same camera"), and the training images of each identity alternate between
cameras 0 and 1 in file-name order, so that cross-camera pairs exist for metric learning. A
warning says when the fallback is in use. Names with a camera mixed with names without one are a
:class:`DatasetError` naming examples of both kinds and their folders (guessing would silently
change which gallery images count as same-camera matches).

Before training, :func:`check_training_set` refuses a training set with fewer than two
identities and warns about identities that cannot contribute (a single image, or a single
camera for methods that learn from cross-camera pairs).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
#: How many offending file names an error message shows.
SHOW_FIRST = 5

JUNK_ID = -1
DISTRACTOR_ID = 0
#: Largest id (and camera number) accepted: ids are int64 in every array built from records.
MAX_ID = int(np.iinfo(np.int64).max)


class DatasetError(ValueError):
    """A dataset folder's content cannot be used as it is; the message names files and folder."""


class TrainingSetError(DatasetError):
    """A training set that a method cannot learn from (see :func:`check_training_set`)."""


@dataclass(frozen=True)
class Record:
    """One image: its path, person id and 0-based camera id."""

    path: Path
    pid: int
    camid: int


@dataclass
class ReidDataset:
    """The three splits of a re-ID dataset.

    Attributes
    ----------
    name : str
        Registry name of the layout (``"market1501"``, ``"synthetic"``, ...).
    root : Path
        Folder holding the three split folders.
    train, query, gallery : list of Record
        Training ids are relabelled to ``0..num_train_pids-1``; query and gallery keep original ids.
    train_pid_map : dict
        Original training id -> relabelled id.
    """

    name: str
    root: Path
    train: list[Record]
    query: list[Record]
    gallery: list[Record]
    train_pid_map: dict[int, int] = field(default_factory=dict)

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    def test_fingerprint(self) -> str:
        """What identifies the test split independently of where it lies: a hash of every query
        and gallery image's name (relative to the root), identity, camera and byte size. A
        dataset moved or copied keeps it; another dataset of the same layout does not."""
        digest = hashlib.sha256()
        for split in ("query", "gallery"):
            for r in getattr(self, split):
                path = Path(r.path)
                name = path.relative_to(self.root) if path.is_relative_to(self.root) else path.name
                size = path.stat().st_size if path.is_file() else -1
                digest.update(f"{split}|{name}|{r.pid}|{r.camid}|{size}\n".encode())
        return digest.hexdigest()[:16]

    def summary(self) -> str:
        """A small table of ids / images / cameras per split."""
        lines = [f"dataset {self.name} at {self.root}", "  split    | ids  | images | cameras"]
        for split in ("train", "query", "gallery"):
            recs = getattr(self, split)
            ids = len({r.pid for r in recs})
            cams = len({r.camid for r in recs})
            lines.append(f"  {split:<8} | {ids:4d} | {len(recs):6d} | {cams:7d}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# File-name parsers: name -> (person id, 0-based camera id) or None when the name does not parse.
# --------------------------------------------------------------------------------------------
NameParser = Callable[[str], "tuple[int, int] | None"]

_MARKET_RE = re.compile(r"^(-?\d+)_c(\d)s\d+_\d+_\d+\.\w+$")
_DUKE_RE = re.compile(r"^(-?\d+)_c(\d+)_f\d+\.\w+$")
# ``<id>_c<cam>`` optionally followed by Market-1501's sequence (``c1s1``), then a separator.
_GENERIC_RE = re.compile(r"^(-?\d+)_c(\d+)(?:s\d+)?(?:[_.-].*)?\.\w+$")
_GENERIC_NOCAM_RE = re.compile(r"^(-?\d+)(?:[_.-].*)?\.\w+$")


def _parse(regex: re.Pattern[str], name: str) -> tuple[int, int] | None:
    match = regex.match(name)
    if match is None:
        return None
    pid, cam = int(match.group(1)), int(match.group(2))
    if cam < 1:
        return None
    return pid, cam - 1


def parse_market_name(name: str) -> tuple[int, int] | None:
    """Market-1501: ``0002_c1s1_000451_03.jpg`` -> (2, 0)."""
    return _parse(_MARKET_RE, name)


def parse_duke_name(name: str) -> tuple[int, int] | None:
    """DukeMTMC-reID: ``0005_c2_f0046985.jpg`` -> (5, 1)."""
    return _parse(_DUKE_RE, name)


def parse_generic_name(name: str) -> tuple[int, int] | None:
    """Generic: ``<id>_c<cam>_<anything>.<ext>`` -> (id, cam - 1).

    Market-1501 style names are understood too: ``0002_c1s1_000451_03.jpg`` -> (2, 0). Names
    without a camera, or with camera ``c0`` (cameras are 1-based in names), give None.
    """
    return _parse(_GENERIC_RE, name)


def _id_out_of_range(pid: int, camid: int | None = None) -> bool:
    """An id other than -1 below 0, or an id / camera too large for the int64 arrays."""
    return pid < JUNK_ID or pid > MAX_ID or (camid is not None and camid > MAX_ID)


def _ids_out_of_range_error(bad: list[str], folder: Path) -> DatasetError:
    return DatasetError(
        f"{len(bad)} file name(s) in {folder} carry an id outside {JUNK_ID}..{MAX_ID} or a "
        f"camera number beyond {MAX_ID} (-1 marks junk boxes, 0 distractors; no other negative "
        f"id has a meaning, and ids must fit in 64 bits), e.g. {bad[:SHOW_FIRST]}"
    )


# --------------------------------------------------------------------------------------------
# Reading folders
# --------------------------------------------------------------------------------------------
def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; clear errors for missing/empty ones."""
    if not folder.is_dir():
        raise FileNotFoundError(f"split folder not found: {folder}")
    entries = sorted(folder.iterdir())
    named = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS]
    images = [p for p in named if p.is_file()]
    # Market-1501 ships Thumbs.db in some folders: skip non-images, but say how many; an entry
    # named like an image that is no file (a dangling link, a folder) would silently drop one.
    unreadable = [p.name for p in named if not p.is_file()]
    if unreadable:
        log.warning(
            "%s: skipped %d entr%s named like an image that %s not a readable file (a dangling "
            "link or a folder), e.g. %s",
            folder,
            len(unreadable),
            "y" if len(unreadable) == 1 else "ies",
            "is" if len(unreadable) == 1 else "are",
            unreadable[:3],
        )
    others = sum(1 for p in entries if p.is_file() and p not in named)
    if others:
        log.warning("%s: skipped %d non-image file(s)", folder, others)
    if not images:
        raise DatasetError(
            f"split folder {folder} contains no images (extensions {sorted(IMAGE_EXTENSIONS)})"
        )
    return images


def read_split(folder: Path, parser: NameParser) -> list[Record]:
    """Parse every image name in ``folder``; names that do not parse raise one error naming them."""
    images = list_images(folder)
    records: list[Record] = []
    bad: list[str] = []
    for path in images:
        parsed = parser(path.name)
        if parsed is None:
            bad.append(path.name)
            continue
        records.append(Record(path=path, pid=parsed[0], camid=parsed[1]))
    if bad:
        raise DatasetError(
            f"{len(bad)} file name(s) in {folder} do not follow the layout's naming convention, "
            f"e.g. {bad[:SHOW_FIRST]}"
        )
    out_of_range = [r.path.name for r in records if _id_out_of_range(r.pid, r.camid)]
    if out_of_range:
        raise _ids_out_of_range_error(out_of_range, folder)
    return records


def _check_root(name: str, root: Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root for {name!r} not found: {root}")
    missing = [d for d in SPLIT_DIRS.values() if not (root / d).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"dataset root {root} for {name!r} lacks split folder(s) {missing}; expected "
            f"{sorted(SPLIT_DIRS.values())}"
        )
    return root


def _drop_ids(records: list[Record], ids: set[int], split: str, folder: Path) -> list[Record]:
    kept = [r for r in records if r.pid not in ids]
    dropped = len(records) - len(kept)
    if dropped:
        log.info(
            "%s: dropped %d %s image(s) with junk/distractor ids %s", folder, dropped, split, ids
        )
    if not kept:
        raise DatasetError(f"split folder {folder} has no images left after dropping ids {ids}")
    return kept


def relabel(records: list[Record]) -> tuple[list[Record], dict[int, int]]:
    """Map original ids to ``0..N-1`` in sorted order."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [Record(r.path, mapping[r.pid], r.camid) for r in records], mapping


def warn_unmatched_queries(query: list[Record], gallery: list[Record], where: Path) -> int:
    """Count queries whose id has no gallery image in another camera (warning, not an error)."""
    cams_by_id: dict[int, set[int]] = {}
    for r in gallery:
        cams_by_id.setdefault(r.pid, set()).add(r.camid)
    unmatched = [r for r in query if not (cams_by_id.get(r.pid, set()) - {r.camid}) or r.pid <= 0]
    if unmatched:
        log.warning(
            "%s: %d of %d queries have no cross-camera gallery match (e.g. %s); the official "
            "protocol counts them with AP 0, the torchreid variant skips them",
            where,
            len(unmatched),
            len(query),
            [r.path.name for r in unmatched[:SHOW_FIRST]],
        )
    return len(unmatched)


def record_arrays(records: Sequence[Record]) -> tuple[np.ndarray, np.ndarray]:
    """Person ids and camera ids of ``records`` as int64 arrays, as evaluation wants them.

    Parameters
    ----------
    records : sequence of Record

    Returns
    -------
    (ids, cams) : two int64 ndarrays of shape (len(records),)

    Raises
    ------
    DatasetError
        An id or camera does not fit in int64 (the message names the file).
    """
    low = -MAX_ID - 1
    for r in records:
        if not (low <= r.pid <= MAX_ID and low <= r.camid <= MAX_ID):
            raise DatasetError(
                f"id {r.pid} / camera {r.camid} of {r.path} does not fit in a 64-bit integer"
            )
    ids = np.fromiter((r.pid for r in records), dtype=np.int64, count=len(records))
    cams = np.fromiter((r.camid for r in records), dtype=np.int64, count=len(records))
    return ids, cams


def _describe_records(records: Sequence[Record]) -> str:
    folders = sorted({str(r.path.parent) for r in records})
    if len(folders) == 1:
        return folders[0]
    return f"{len(folders)} folders ({', '.join(folders[:3])}{', ...' if len(folders) > 3 else ''})"


def check_training_set(
    train: ReidDataset | Sequence[Record],
    *,
    needs_cross_camera_pairs: bool,
    what: str | None = None,
) -> list[str]:
    """Refuse a training set a method cannot learn from; warn about identities that add little.

    Parameters
    ----------
    train : ReidDataset or sequence of Record
        A dataset (its ``train`` split is checked; messages show the original ids of the
        dataset's ``train_pid_map``) or the training records themselves.
    needs_cross_camera_pairs : bool
        True for methods that learn from same-identity pairs seen by different cameras (XQDA):
        then identities seen by a single camera are reported, and a set where *no* identity is
        seen by two cameras is an error. False for ID-classification training (the CNNs): then
        identities with a single image are reported.
    what : str, optional
        How messages name the training set. Default: ``"<name> (<root>/bounding_box_train)"``
        for a dataset, the records' folder otherwise.

    Returns
    -------
    list of str
        Warnings, empty when every identity can contribute. Each is also logged at WARNING
        level on this module's logger, so callers need not print them again (keep them, e.g.,
        in a run summary).

    Raises
    ------
    TrainingSetError
        (a ValueError) The set has no image, fewer than 2 identities (ID classification would
        have one class and a zero loss, metric learning no negative pair), or, with
        ``needs_cross_camera_pairs``, no identity seen by two or more cameras.
    """
    index = _identities(train, what)
    if index.count < 2:
        (pid,) = index.files
        raise TrainingSetError(
            f"training set {index.what} has 1 identity ({index.show(pid)}); training needs at "
            "least 2 identities (ID classification would have a single class and a zero loss, "
            "metric learning no pair of different people). Use a dataset with more identities."
        )
    if needs_cross_camera_pairs:
        warnings = _cross_camera_warnings(index)
    else:
        single = [pid for pid, recs in index.files.items() if len(recs) < 2]
        warnings = [
            f"{len(single)} of {index.count} training identities in {index.what} have a single "
            "image, so each is a class learnt from one example with no positive pair "
            f"(e.g. {index.examples(single)})"
        ] if single else []  # fmt: skip
    for message in warnings:
        log.warning("%s", message)
    return warnings


@dataclass
class _IdentityIndex:
    """A training set's images grouped by identity, for messages that name them."""

    files: dict[int, list[Record]]
    original: dict[int, int]  # dataset id -> id in the file names
    what: str

    @property
    def count(self) -> int:
        return len(self.files)

    def show(self, pid: int) -> str:
        recs = self.files[pid]
        cams = sorted({r.camid + 1 for r in recs})
        cam_text = f"camera{'s' if len(cams) > 1 else ''} {', '.join(f'c{c}' for c in cams)}"
        return (
            f"id {self.original.get(pid, pid)} ({len(recs)} image{'s' if len(recs) > 1 else ''}"
            f", {cam_text}, e.g. {recs[0].path.name})"
        )

    def examples(self, pids: list[int]) -> str:
        return "; ".join(self.show(p) for p in pids[:SHOW_FIRST])


def _identities(train: ReidDataset | Sequence[Record], what: str | None) -> _IdentityIndex:
    """The identity index of ``train``'s records; an empty set is an error."""
    if isinstance(train, ReidDataset):
        records: Sequence[Record] = train.train
        original = {new: old for old, new in train.train_pid_map.items()}
        if what is None:  # a layout without bounding_box_train/ is named by its images' folder
            folder = train.root / SPLIT_DIRS["train"]
            shown = folder if folder.is_dir() or not records else _describe_records(records)
            what = f"{train.name} ({shown})"
    else:
        records = list(train)
        original = {}
        if what is None:
            what = _describe_records(records) if records else "(no records)"
    if not records:
        raise TrainingSetError(
            f"training set {what} has no images; training needs at least 2 identities"
        )
    files: dict[int, list[Record]] = {}
    for r in records:
        files.setdefault(r.pid, []).append(r)
    return _IdentityIndex(files, original, what)


def _cross_camera_warnings(index: _IdentityIndex) -> list[str]:
    """Identities seen by a single camera (no cross-camera positive pair); none at all is an
    error for a method that learns from such pairs."""
    single_cam = [pid for pid, recs in index.files.items() if len({r.camid for r in recs}) < 2]
    if len(single_cam) == index.count:
        raise TrainingSetError(
            f"training set {index.what}: none of its {index.count} identities is seen by two or "
            "more cameras, so there is no same-identity cross-camera pair to learn from (e.g. "
            f"{index.examples(single_cam)}); check the camera ids in the file names"
        )
    if not single_cam:
        return []
    return [
        f"{len(single_cam)} of {index.count} training identities in {index.what} are seen by a "
        "single camera, so they give no same-identity cross-camera pair, only negatives "
        f"(e.g. {index.examples(single_cam)})"
    ]


def read_three_folders(name: str, root: Path | str, parser: NameParser) -> ReidDataset:
    """Read a Market-style root with the given file-name parser."""
    root = _check_root(name, Path(root))
    folders = {split: root / d for split, d in SPLIT_DIRS.items()}
    train = read_split(folders["train"], parser)
    query = read_split(folders["query"], parser)
    gallery = read_split(folders["gallery"], parser)
    return assemble(name, root, train, query, gallery)


def assemble(
    name: str, root: Path, train: list[Record], query: list[Record], gallery: list[Record]
) -> ReidDataset:
    """The rules every layout shares: drop junk/distractors from train and query, relabel the
    training ids to 0..N-1, warn about queries without a cross-camera gallery match."""
    # Junk and distractors carry no identity to learn or to look for; the gallery keeps them.
    train = _drop_ids(train, {JUNK_ID, DISTRACTOR_ID}, "train", root / SPLIT_DIRS["train"])
    query = _drop_ids(query, {JUNK_ID, DISTRACTOR_ID}, "query", root / SPLIT_DIRS["query"])
    train, mapping = relabel(train)
    warn_unmatched_queries(query, gallery, root / SPLIT_DIRS["query"])
    return ReidDataset(name, root, train, query, gallery, mapping)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    loader: Callable[[Path], ReidDataset]
    default_root: Path | Callable[[], Path] | None

    def root(self) -> Path | None:
        """The default root; a callable one is resolved now (it reads the environment when a
        dataset is loaded, never at import)."""
        return self.default_root() if callable(self.default_root) else self.default_root


_LAYOUTS: dict[str, _Layout] = {}
_ALIASES = {"market": "market1501", "duke": "dukemtmcreid", "dukemtmc": "dukemtmcreid"}


def _normalise(name: str) -> str:
    """Registry key: case, '-' and '_' do not matter ("Market-1501" == "market1501")."""
    key = name.lower().replace("-", "").replace("_", "")
    return _ALIASES.get(key, key)


def _rerun_as_main(known: Callable, loader: Callable) -> bool:
    """Whether ``loader`` is ``known`` defined again by its module run as a script: ``python -m
    data.synthetic`` executes the module that importing the package has already registered."""
    return (
        loader.__module__ == "__main__"
        and loader.__qualname__ == known.__qualname__
        and loader.__code__.co_filename == known.__code__.co_filename
    )


def register_layout(
    name: str, *, default_root: Path | str | Callable[[], Path] | None = None
) -> Callable[[Callable[[Path], ReidDataset]], Callable[[Path], ReidDataset]]:
    """Decorator registering ``loader(root) -> ReidDataset`` under ``name``; ``default_root``
    may be a function, called when a dataset of this layout is loaded without a root."""

    def decorator(loader: Callable[[Path], ReidDataset]) -> Callable[[Path], ReidDataset]:
        known = _LAYOUTS.get(_normalise(name))
        if known is not None and _rerun_as_main(known.loader, loader):
            return loader  # keep the package's own loader
        if known is not None:
            raise ValueError(f"dataset layout {name!r} is already registered")
        default = default_root if callable(default_root) or not default_root else Path(default_root)
        _LAYOUTS[_normalise(name)] = _Layout(loader, default)
        return loader

    return decorator


def list_layouts() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_LAYOUTS)


def load_dataset(name: str, root: Path | str | None = None) -> ReidDataset:
    """Load a dataset by layout name.

    Parameters
    ----------
    name : str
        One of :func:`list_layouts` (``market1501``, ``dukemtmcreid``, ``generic``, ``synthetic``).
    root : path, optional
        Folder holding ``bounding_box_train/``, ``query/`` and ``bounding_box_test/``. Only the
        synthetic layout has a default (``datasets/synthetic``, generated when missing).
    """
    key = _normalise(name)
    if key not in _LAYOUTS:
        raise ValueError(f"unknown dataset layout {name!r}; known layouts: {list_layouts()}")
    layout = _LAYOUTS[key]
    if root is None or str(root) == "":
        root = layout.root()
        if root is None:
            raise ValueError(f"dataset {name!r} needs a root folder (--data-root / DATA_ROOT)")
    return layout.loader(Path(root))


@register_layout("market1501")
def _load_market(root: Path) -> ReidDataset:
    return read_three_folders("market1501", root, parse_market_name)


@register_layout("dukemtmcreid")
def _load_duke(root: Path) -> ReidDataset:
    return read_three_folders("dukemtmcreid", root, parse_duke_name)


@register_layout("generic")
def _load_generic(root: Path) -> ReidDataset:
    root = _check_root("generic", root)
    parsed = {split: _read_generic_split(root / d) for split, d in SPLIT_DIRS.items()}
    n_with = sum(camid is not None for items in parsed.values() for _, _, camid in items)
    n_total = sum(len(items) for items in parsed.values())
    if n_with == n_total:
        records = {
            split: [Record(path, pid, camid) for path, pid, camid in items]  # type: ignore[arg-type]
            for split, items in parsed.items()
        }
        return assemble("generic", root, records["train"], records["query"], records["gallery"])
    if n_with == 0:
        return _generic_without_cameras(root, parsed, n_total)
    raise DatasetError(_mixed_cameras_message(root, parsed, n_with, n_total - n_with))


#: (path, id, 0-based camera or None when the name carries no camera)
_GenericItem = tuple[Path, int, "int | None"]


def _read_generic_split(folder: Path) -> list[_GenericItem]:
    """Parse every name of a generic split folder, each with its own camera (or None)."""
    items: list[_GenericItem] = []
    bad: list[str] = []
    camera_zero: list[str] = []
    for path in list_images(folder):
        with_cam = _GENERIC_RE.match(path.name)
        if with_cam is not None:
            pid, cam = int(with_cam.group(1)), int(with_cam.group(2))
            if cam < 1:
                camera_zero.append(path.name)
                continue
            items.append((path, pid, cam - 1))
            continue
        without_cam = _GENERIC_NOCAM_RE.match(path.name)
        if without_cam is None:
            bad.append(path.name)
            continue
        items.append((path, int(without_cam.group(1)), None))
    if bad:
        raise DatasetError(
            f"{len(bad)} file name(s) in {folder} do not start with '<id>_' (generic layout: "
            f"'<id>_c<cam>_<anything>.<ext>' or '<id>_<anything>.<ext>'), e.g. {bad[:SHOW_FIRST]}"
        )
    if camera_zero:
        raise DatasetError(
            f"{len(camera_zero)} file name(s) in {folder} have camera c0, but camera numbers in "
            f"names are 1-based (c1 is the first camera), e.g. {camera_zero[:SHOW_FIRST]}"
        )
    out_of_range = [p.name for p, pid, cam in items if _id_out_of_range(pid, cam)]
    if out_of_range:
        raise _ids_out_of_range_error(out_of_range, folder)
    return items


def _mixed_cameras_message(
    root: Path, parsed: dict[str, list[_GenericItem]], n_with: int, n_without: int
) -> str:
    show = 3
    parts = []
    for split, items in parsed.items():
        with_cam = [p.name for p, _, cam in items if cam is not None]
        without_cam = [p.name for p, _, cam in items if cam is None]
        described = []
        if with_cam:
            described.append(f"{len(with_cam)} with a camera, e.g. {with_cam[:show]}")
        if without_cam:
            described.append(f"{len(without_cam)} without, e.g. {without_cam[:show]}")
        parts.append(f"{root / SPLIT_DIRS[split]}: {'; '.join(described)}")
    return (
        f"generic dataset {root}: {n_with} image name(s) carry a camera id "
        f"('<id>_c<cam>_...') and {n_without} do not ('<id>_...'). Cameras are read per file, "
        "so either every name carries one or none does (then a documented fallback assigns "
        "cameras); a mix would silently change which gallery images count as same-camera "
        "matches. Add the camera to the names that lack one (or drop it from all). "
        + " | ".join(parts)
    )


def _generic_without_cameras(
    root: Path, parsed: dict[str, list[_GenericItem]], n_total: int
) -> ReidDataset:
    log.warning(
        "%s: none of the %d image names in its three split folders carries a camera id "
        "('<id>_c<cam>_...'); with no camera ids, using the documented fallback (query camera 0, "
        "gallery camera 1, training images alternate cameras 0/1 per identity)",
        root,
        n_total,
    )

    def records(split: str, camid_of: Callable[[int, int], int]) -> list[Record]:
        seen: dict[int, int] = {}
        out = []
        for path, pid, _ in parsed[split]:
            nth = seen.get(pid, 0)
            seen[pid] = nth + 1
            out.append(Record(path, pid, camid_of(pid, nth)))
        return out

    train = records("train", lambda _pid, nth: nth % 2)
    query = records("query", lambda _pid, _nth: 0)
    gallery = records("gallery", lambda _pid, _nth: 1)
    return assemble("generic", root, train, query, gallery)


def validation_split(
    dataset: ReidDataset, *, val_fraction: float = 0.2, seed: int = 0
) -> ReidDataset:
    """Hold out some training identities as a query/gallery set for model selection.

    Hyper-parameters (distillation T and alpha, say) must never be chosen on the test split. This
    returns a dataset whose ``train`` holds the other identities (relabelled to ``0..N-1``) and
    whose ``query``/``gallery`` come from the held-out identities: for each held-out identity, one
    query per camera (its first image there) and the rest in the gallery. Only identities seen
    in at least two cameras are held out, so every query has a cross-camera match.

    Parameters
    ----------
    dataset : ReidDataset
    val_fraction : float
        Fraction of the training identities to hold out, in (0, 1).
    seed : int
        Which identities are held out.
    """
    import numpy as np

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    cams_by_pid: dict[int, set[int]] = {}
    for r in dataset.train:
        cams_by_pid.setdefault(r.pid, set()).add(r.camid)
    eligible = sorted(pid for pid, cams in cams_by_pid.items() if len(cams) >= 2)
    n_val = round(val_fraction * len(cams_by_pid))
    if n_val < 2 or len(cams_by_pid) - n_val < 2 or n_val > len(eligible):
        raise ValueError(
            f"cannot hold out {val_fraction:.0%} of {len(cams_by_pid)} training ids "
            f"({len(eligible)} seen in 2+ cameras) and keep at least 2 ids on each side"
        )
    rng = np.random.default_rng(seed)
    held_out = {int(p) for p in rng.choice(eligible, size=n_val, replace=False)}
    train = [r for r in dataset.train if r.pid not in held_out]
    query: list[Record] = []
    gallery: list[Record] = []
    seen: set[tuple[int, int]] = set()
    for r in dataset.train:
        if r.pid not in held_out:
            continue
        if (r.pid, r.camid) in seen:
            gallery.append(r)
        else:
            seen.add((r.pid, r.camid))
            query.append(r)
    train, mapping = relabel(train)
    return ReidDataset(f"{dataset.name}-val", dataset.root, train, query, gallery, mapping)
