"""Training data for the CNNs: images in memory, deterministic batches and augmentation.

The batch order and every random augmentation are a pure function of ``(seed, epoch, batch
index)``, independent of the model and of any global RNG. Two models trained with the same seed
therefore see exactly the same augmented batches: distillation relies on it to compute the
teacher's outputs once per batch and share them across students, and ``--resume`` relies on it
to continue an interrupted epoch bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from data.images import load_image, resize
from data.layouts import Record, ReidDataset, load_dataset
from deep.config import TrainConfig

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_records(records: Sequence[Record], size: tuple[int, int]) -> Tensor:
    """All images of ``records`` resized to ``size``, as one uint8 tensor (n, 3, H, W)."""
    if not records:
        raise ValueError("no images to load")
    array = np.stack([load_image(r.path, size) for r in records])
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def normalise(images_uint8: Tensor) -> Tensor:
    """uint8 (n, 3, H, W) -> float, ImageNet mean/std."""
    return (images_uint8.float() / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def preprocess_image(image: np.ndarray, size: tuple[int, int]) -> Tensor:
    """One decoded RGB uint8 (H, W, 3) image -> normalised (1, 3, h, w) at ``size``."""
    tensor = torch.from_numpy(np.ascontiguousarray(resize(image, size))).permute(2, 0, 1)[None]
    return normalise(tensor)


def _generator(*keys: int) -> torch.Generator:
    # A 63-bit seed from the keys (SeedSequence mixes them well and is stable across versions).
    seed = int(np.random.SeedSequence(list(keys)).generate_state(2, np.uint64)[0] >> np.uint64(1))
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    pad: int = 4  # pixels padded on each side before the random crop (0 disables)
    erasing: float = 0.5  # probability of random erasing per image
    colour: float = 0.0  # colour jitter strength (0 disables): camera-like casts, see augment


def augment(images: Tensor, config: AugmentConfig, generator: torch.Generator) -> Tensor:
    """Colour jitter, flip, pad-and-crop and random erasing of a normalised batch (n, 3, H, W).

    Colour jitter (strength ``j``) imitates a camera: per image, a gain per channel in
    [1 - j, 1 + j] (colour cast), a saturation factor in [1 - j, 1 + j] around the pixel's grey
    level and a gamma in [1 - j/2, 1 + j/2], applied in [0, 1] and clipped. Random numbers are
    only drawn for enabled steps, so disabled steps leave the batches of older configs unchanged.
    """
    n, _, h, w = images.shape
    out = images.clone()
    if config.colour > 0:
        j = config.colour
        gain = torch.empty(n, 3, 1, 1).uniform_(1 - j, 1 + j, generator=generator)
        saturation = torch.empty(n, 1, 1, 1).uniform_(1 - j, 1 + j, generator=generator)
        gamma = torch.empty(n, 1, 1, 1).uniform_(1 - j / 2, 1 + j / 2, generator=generator)
        rgb = out * IMAGENET_STD + IMAGENET_MEAN
        rgb = (rgb * gain).clamp(0.0, 1.0)
        grey = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        rgb = (grey + saturation * (rgb - grey)).clamp(0.0, 1.0) ** gamma
        out = (rgb - IMAGENET_MEAN) / IMAGENET_STD
    if config.flip:
        flip = torch.rand(n, generator=generator) < 0.5
        out[flip] = out[flip].flip(-1)
    if config.pad > 0:
        p = config.pad
        padded = torch.nn.functional.pad(out, (p, p, p, p), mode="constant", value=0.0)
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        for i in range(n):
            out[i] = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    if config.erasing > 0:
        erase = torch.rand(n, generator=generator) < config.erasing
        area = torch.empty(n).uniform_(0.02, 0.3, generator=generator)
        aspect = torch.exp(torch.empty(n).uniform_(np.log(0.3), np.log(3.3), generator=generator))
        for i in torch.nonzero(erase).flatten().tolist():
            eh = int(min(h, round(float((area[i] * h * w * aspect[i]).sqrt()))))
            ew = int(min(w, round(float((area[i] * h * w / aspect[i]).sqrt()))))
            if eh < 1 or ew < 1:
                continue
            y = int(torch.randint(0, h - eh + 1, (1,), generator=generator))
            x = int(torch.randint(0, w - ew + 1, (1,), generator=generator))
            out[i, :, y : y + eh, x : x + ew] = torch.randn(3, eh, ew, generator=generator)
    return out


@dataclass(frozen=True)
class Batch:
    """One training batch: global sample indices, augmented images, labels."""

    epoch: int
    index: int
    sample_indices: Tensor
    images: Tensor
    labels: Tensor


class DeterministicLoader:
    """Batches of a fixed in-memory training set, reproducible from (seed, epoch, batch index).

    Parameters
    ----------
    images : uint8 Tensor (n, 3, H, W)
    labels : int Tensor (n,)
    batch_size : int
        Global batch size (split across ranks under DDP).
    seed : int
    sampler : {"random", "identity"}
        ``random``: a permutation per epoch; ``identity``: P identities x K images per batch
        (for the triplet loss), K = ``instances``.
    rank, world_size : int
        This process's share of each global batch under DistributedDataParallel.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        seed: int,
        augment_config: AugmentConfig | None = None,
        sampler: str = "random",
        instances: int = 4,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(
                f"batch_size must be a positive multiple of the world size {world_size}, got "
                f"{batch_size}"
            )
        if sampler not in ("random", "identity"):
            raise ValueError(f"sampler must be 'random' or 'identity', got {sampler!r}")
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.seed = seed
        self.augment_config = augment_config or AugmentConfig()
        self.sampler = sampler
        self.instances = instances
        self.rank = rank
        self.world_size = world_size
        self._normalised = normalise(images)

    def order(self, epoch: int) -> Tensor:
        """All sample indices of ``epoch`` in batch order (drops an incomplete last batch)."""
        generator = _generator(self.seed, 1, epoch)
        if self.sampler == "random":
            perm = torch.randperm(len(self.labels), generator=generator)
        else:
            perm = self._identity_order(generator)
        usable = (len(perm) // self.batch_size) * self.batch_size
        return perm[:usable]

    def _identity_order(self, generator: torch.Generator) -> Tensor:
        by_id: dict[int, list[int]] = {}
        for i, label in enumerate(self.labels.tolist()):
            by_id.setdefault(label, []).append(i)
        chunks = []
        for label in sorted(by_id):
            idx = torch.tensor(by_id[label])
            idx = idx[torch.randperm(len(idx), generator=generator)]
            if len(idx) < self.instances:
                extra = torch.randint(
                    0, len(idx), (self.instances - len(idx),), generator=generator
                )
                idx = torch.cat([idx, idx[extra]])
            for start in range(0, len(idx) - self.instances + 1, self.instances):
                chunks.append(idx[start : start + self.instances])
        chunk_order = torch.randperm(len(chunks), generator=generator)
        return torch.cat([chunks[i] for i in chunk_order.tolist()])

    def num_batches(self, epoch: int = 0) -> int:
        return len(self.order(epoch)) // self.batch_size

    def batch(self, epoch: int, index: int, order: Tensor | None = None) -> Batch:
        order = self.order(epoch) if order is None else order
        indices = order[index * self.batch_size : (index + 1) * self.batch_size]
        images = augment(
            self._normalised[indices], self.augment_config, _generator(self.seed, 2, epoch, index)
        )
        share = self.batch_size // self.world_size
        part = slice(self.rank * share, (self.rank + 1) * share)
        return Batch(epoch, index, indices[part], images[part], self.labels[indices][part])

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = self.order(epoch)
        for index in range(start, len(order) // self.batch_size):
            yield self.batch(epoch, index, order)


def load_training_data(
    config: TrainConfig, dataset: ReidDataset | None = None
) -> tuple[ReidDataset, Tensor, Tensor]:
    """(dataset, training images at the config's input size, identity labels)."""
    dataset = dataset or load_dataset(config.dataset, config.data_root)
    images = load_records(dataset.train, config.input_size)
    labels = torch.tensor([r.pid for r in dataset.train], dtype=torch.long)
    return dataset, images, labels


def training_loader(
    config: TrainConfig, images: Tensor, labels: Tensor, *, rank: int = 0, world_size: int = 1
) -> DeterministicLoader:
    """The deterministic batches of ``config``'s schedule (:data:`deep.config.SCHEDULE_FIELDS`)."""
    return DeterministicLoader(
        images,
        labels,
        batch_size=config.batch_size,
        seed=config.seed,
        augment_config=AugmentConfig(config.flip, config.pad, config.erasing, config.colour_jitter),
        sampler=config.sampler,
        instances=config.instances,
        rank=rank,
        world_size=world_size,
    )
