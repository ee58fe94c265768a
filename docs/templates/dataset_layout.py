"""Template: a dataset layout with one folder per person.

Copy this file into the package (e.g. ``data/layout_person_folders.py``, imported from
``data/__init__.py``) and rename the layout. Every command then accepts
``--dataset person-folders --data-root ROOT`` for a root that looks like::

    ROOT/train/<person id>/c<camera>_<anything>.jpg
    ROOT/query/<person id>/c<camera>_<anything>.jpg
    ROOT/gallery/<person id>/c<camera>_<anything>.jpg     (person id -1: junk, 0: distractor)

The loader only has to produce :class:`data.layouts.Record` lists; ``assemble`` then applies the
rules every layout shares (junk and distractors dropped from train and query, training ids
relabelled to 0..N-1, a warning for queries without a cross-camera match).
"""

from __future__ import annotations

import re
from pathlib import Path

from data.layouts import (
    DatasetError,
    Record,
    ReidDataset,
    assemble,
    list_images,
    register_layout,
)

LAYOUT_NAME = "person-folders"
SPLITS = {"train": "train", "query": "query", "gallery": "gallery"}
_CAMERA = re.compile(r"^c(\d+)_")


def read_person_folders(folder: Path) -> list[Record]:
    """Records of ``folder/<pid>/c<cam>_*.ext``; a clear error naming what does not parse."""
    if not folder.is_dir():
        raise FileNotFoundError(f"split folder not found: {folder}")
    records: list[Record] = []
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            pid = int(person.name)
        except ValueError:
            message = f"{person} is not a person id folder (expected an integer)"
            raise DatasetError(message) from None
        for path in list_images(person):
            match = _CAMERA.match(path.name)
            if match is None:
                raise DatasetError(f"{path}: expected a name like c1_0001.jpg")
            records.append(Record(path=path, pid=pid, camid=int(match.group(1)) - 1))
    if not records:
        raise DatasetError(f"split folder {folder} holds no person folders with images")
    return records


@register_layout(LAYOUT_NAME)
def load_person_folders(root: Path) -> ReidDataset:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root for {LAYOUT_NAME!r} not found: {root}")
    splits = {split: read_person_folders(root / sub) for split, sub in SPLITS.items()}
    return assemble(LAYOUT_NAME, root, splits["train"], splits["query"], splits["gallery"])
