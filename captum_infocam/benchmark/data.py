"""A procedurally generated localisation data set with exact object masks.

Each image (64 x 64 RGB by default) shows one class-defining shape (or two of
different classes, for the two-object split) at a random position, scale,
rotation and colour, over a cluttered background: a smooth colour field, stripes
of random orientation, and pixel noise. One to three distractors (thick line
segments and scribbles, in the same colours as the shapes) carry no class
information. The class is the shape alone.

Every item is drawn from its own random generator seeded by
``(seed, split, objects, index)``, so an item never depends on which other items
are drawn, in which order, or by which process.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.ops import masks_to_boxes

__all__ = ["CLASSES", "SPLITS", "ShapeItem", "ShapesDataset", "collate", "reference_images"]

SPLITS = {"train": 0, "val": 1, "test": 2}

Grid = tuple[np.ndarray, np.ndarray]


def _polar(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.hypot(u, v), np.arctan2(v, u)


def _disk(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.hypot(u, v) < 1.0


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    radius = np.hypot(u, v)
    return (radius < 1.0) & (radius > 0.55)


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) < 0.8) & (np.abs(v) < 0.8)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Equilateral, circumradius 1: inside three half-planes at distance 0.5 from the centre.
    angles = np.pi / 2 + 2 * np.pi * np.arange(3) / 3
    inside = np.ones_like(u, dtype=bool)
    for angle in angles:
        inside &= u * np.cos(angle) + v * np.sin(angle) > -0.5
    return inside


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return ((np.abs(u) < 1.0) & (np.abs(v) < 0.32)) | ((np.abs(v) < 1.0) & (np.abs(u) < 0.32))


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    radius, angle = _polar(u, v)
    return radius < 0.45 + 0.55 * np.abs(np.cos(2.5 * angle)) ** 2


#: The class-defining shapes, each a predicate on coordinates in units of its radius.
CLASSES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "disk": _disk,
    "ring": _ring,
    "square": _square,
    "triangle": _triangle,
    "cross": _cross,
    "star": _star,
}
_SHAPES = list(CLASSES.values())


@dataclass(frozen=True)
class ShapeItem:
    """One image and its objects.

    Attributes:
        image (Tensor): ``(3, H, W)`` float32 in ``[0, 1]``.
        labels (Tensor): ``(K,)`` class indices of the ``K`` objects.
        masks (Tensor): ``(K, H, W)`` bool, the visible pixels of each object.
        boxes (Tensor): ``(K, 4)`` float32 ``(x1, y1, x2, y2)`` around each mask.
    """

    image: Tensor
    labels: Tensor
    masks: Tensor
    boxes: Tensor


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour: one channel high, one low, one anywhere."""
    channels = rng.permutation(3)
    colour = np.empty(3)
    colour[channels[0]] = rng.uniform(0.75, 1.0)
    colour[channels[1]] = rng.uniform(0.0, 0.25)
    colour[channels[2]] = rng.uniform(0.0, 1.0)
    return colour


def _background(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    rows, cols = grid
    coarse = torch.from_numpy(rng.uniform(0.15, 0.75, (1, 3, 4, 4))).float()
    field = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic")[0].numpy()
    angle, frequency, phase = rng.uniform(0, np.pi), rng.uniform(0.08, 0.25), rng.uniform(0, 6.3)
    stripes = np.sin(2 * np.pi * frequency * (cols * np.cos(angle) + rows * np.sin(angle)) + phase)
    return field + 0.12 * stripes[None] * rng.uniform(0.3, 1.0, (3, 1, 1))


def _segment(grid: Grid, start: np.ndarray, end: np.ndarray, width: float) -> np.ndarray:
    rows, cols = grid
    direction = end - start
    t = ((cols - start[0]) * direction[0] + (rows - start[1]) * direction[1]) / max(
        float(direction @ direction), 1e-9
    )
    t = np.clip(t, 0.0, 1.0)
    return (
        np.hypot(cols - start[0] - t * direction[0], rows - start[1] - t * direction[1]) < width / 2
    )


def _distractor(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    width = rng.uniform(1.5, 3.0)
    points = [rng.uniform(0, size, 2)]
    for _ in range(1 if rng.random() < 0.5 else 3):  # a segment or a scribble
        step = rng.uniform(10, 24) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
        points.append(np.clip(points[-1] + step, 0, size - 1))
    mask = np.zeros((size, size), dtype=bool)
    for start, end in itertools.pairwise(points):
        mask |= _segment(grid, start, end, width)
    return mask


def _place(rng: np.random.Generator, size: int, radii: list[float]) -> list[np.ndarray]:
    """Centres for shapes of ``radii``, inside the image and apart from each other."""
    for _ in range(1000):
        centres = [rng.uniform(r + 1, size - r - 1, 2) for r in radii]
        apart = all(
            np.hypot(*(centres[i] - centres[j])) > radii[i] + radii[j] + 3
            for i in range(len(radii))
            for j in range(i)
        )
        if apart:
            return centres
    raise RuntimeError("could not place the shapes apart")  # pragma: no cover


class ShapesDataset(Dataset):
    """Deterministic shapes data set; ``dataset[i]`` is a :class:`ShapeItem`.

    Args:
        split (str): ``"train"``, ``"val"`` or ``"test"``: disjoint seeds.
        length (int): number of items.
        objects (int): class-defining shapes per image, 1 or 2 (of different classes).
        seed (int): base seed. Default: 0
        image_size (int): side in pixels. Default: 64
        draw_objects (bool): ``False`` draws everything but the shapes (their
            masks are still returned): the leakage check. Default: True
        offset (int): index of the first item, so ``ShapesDataset(..., offset=k)``
            continues a stream (fresh training images each epoch). Default: 0
    """

    def __init__(
        self,
        split: str,
        length: int,
        objects: int = 1,
        seed: int = 0,
        image_size: int = 64,
        draw_objects: bool = True,
        offset: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        if objects not in (1, 2):
            raise ValueError(f"objects must be 1 or 2, got {objects!r}")
        self.split, self.length, self.objects = split, length, objects
        self.seed, self.image_size, self.draw_objects, self.offset = (
            seed,
            image_size,
            draw_objects,
            offset,
        )
        rows, cols = np.mgrid[0:image_size, 0:image_size].astype(np.float64) + 0.5
        self._grid: Grid = (rows, cols)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> ShapeItem:
        if not 0 <= index < self.length:
            raise IndexError(index)
        size = self.image_size
        rng = np.random.default_rng(
            [self.seed, SPLITS[self.split], self.objects, self.offset + index]
        )
        image = _background(rng, self._grid, size)
        for _ in range(rng.integers(1, 4)):
            image = np.where(_distractor(rng, self._grid, size), _colour(rng)[:, None, None], image)

        labels = rng.choice(len(CLASSES), size=self.objects, replace=False)
        scale = size / 64
        radii = list(rng.uniform(7, 12, self.objects) * scale)
        masks = []
        for label, radius, centre in zip(labels, radii, _place(rng, size, radii), strict=True):
            angle = rng.uniform(0, 2 * np.pi)
            rows, cols = self._grid
            dx, dy = (cols - centre[0]) / radius, (rows - centre[1]) / radius
            u = dx * np.cos(angle) + dy * np.sin(angle)
            v = -dx * np.sin(angle) + dy * np.cos(angle)
            mask = _SHAPES[label](u, v)
            colour = _colour(rng)  # drawn either way, so the rest of the item is the same
            if self.draw_objects:
                image = np.where(mask, colour[:, None, None], image)
            masks.append(mask)
        image = image + rng.normal(0, 0.04, image.shape)
        masks_tensor = torch.from_numpy(np.stack(masks))
        return ShapeItem(
            image=torch.from_numpy(np.clip(image, 0, 1)).float(),
            labels=torch.from_numpy(labels).long(),
            masks=masks_tensor,
            boxes=masks_to_boxes(masks_tensor).float() + torch.tensor([0.0, 0.0, 1.0, 1.0]),
        )


def collate(items: list[ShapeItem]) -> ShapeItem:
    """Stacks items into a batch: ``image (N, 3, H, W)``, ``labels (N, K)``, ..."""
    return ShapeItem(
        image=torch.stack([item.image for item in items]),
        labels=torch.stack([item.labels for item in items]),
        masks=torch.stack([item.masks for item in items]),
        boxes=torch.stack([item.boxes for item in items]),
    )


def reference_images(seed: int = 0, images: int = 512, batch_size: int = 128) -> Iterator[Tensor]:
    """Batches ``(B, 3, H, W)`` of the validation split: the reference data of the
    ``"dataset"`` prior (``InfoCAM.fit_statistics``)."""
    reference = ShapesDataset("val", images, seed=seed)
    for start in range(0, images, batch_size):
        stop = min(start + batch_size, images)
        yield collate([reference[i] for i in range(start, stop)]).image
