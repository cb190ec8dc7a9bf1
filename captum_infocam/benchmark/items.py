"""What the benchmark explains: items of (image, target, object mask), loaded in batches.

An item is one explanation: an image, the class to explain and the mask of the
object of that class. A one-object image gives one item; a two-object image
gives two, one per class, so a class-agnostic map cannot score well on both.

Sources:

* :class:`ShapesItems`: the embedded data set (``"single"`` or ``"pair"`` split);
* :class:`GridItems`: 2 x 2 grids of one-object images of four different
  classes, each explained once for each cell's class (the grid pointing game);
* :class:`FolderItems`: a real data set, an ``ImageFolder`` directory plus a
  boxes file.

Boxes file format (JSON), paths relative to the ``ImageFolder`` root, boxes in the
original image's pixels as ``[x1, y1, x2, y2]``, and an optional ``label`` (the
model's class index to explain; the ``ImageFolder`` class index if absent)::

    {"cat/001.jpg": {"boxes": [[12, 30, 200, 180]], "label": 281},
     "dog/002.jpg": {"boxes": [[5, 5, 90, 120], [100, 40, 220, 200]]}}

Images without an entry are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.datasets import ImageFolder
from torchvision.transforms import v2

from captum_infocam.benchmark.data import CLASSES, ShapesDataset
from captum_infocam.metrics import boxes_to_mask

__all__ = ["Batch", "FolderItems", "GridItems", "ShapesItems", "shapes_splits"]


@dataclass(frozen=True)
class Batch:
    """Items stacked: ``image (N, 3, H, W)``, ``target (N,)``, ``mask (N, H, W)``, ``keys``,
    and for grid items the explained ``cell (N, H, W)``."""

    image: Tensor
    target: Tensor
    mask: Tensor
    keys: list[str]
    cell: Optional[Tensor] = None

    def to(self, device: torch.device) -> Batch:
        cell = None if self.cell is None else self.cell.to(device)
        return Batch(
            self.image.to(device), self.target.to(device), self.mask.to(device), self.keys, cell
        )


class ShapesItems:
    """Items of the shapes test split.

    Args:
        split (str): ``"single"`` (one object per image) or ``"pair"`` (two
            objects of different classes, each explained).
        images (int): number of images.
        seed (int): data seed. Default: 0
        image_size (int): side in pixels. Default: 64
    """

    def __init__(self, split: str, images: int, seed: int = 0, image_size: int = 64) -> None:
        if split not in ("single", "pair"):
            raise ValueError(
                f"split must be 'single' or 'pair', got {split!r} (grids: GridItems(images))"
            )
        objects = {"single": 1, "pair": 2}[split]
        self.split = split
        self.items_per_image = objects
        self.dataset = ShapesDataset(
            "test", images, objects=objects, seed=seed, image_size=image_size
        )
        self.keys = [(image, k) for image in range(images) for k in range(objects)]

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def description(self) -> str:
        """What the items are, in words."""
        images = len(self.dataset)
        if self.items_per_image == 1:
            return f"{_count(images, 'one-object image')}, one item each"
        return f"{_count(images, 'two-object image')}, each explained for both of its classes"

    def describe(self, target: int) -> str:
        """The name of class ``target``."""
        return list(CLASSES)[target]

    def load(self, indices: Sequence[int]) -> Batch:
        pairs = [self.keys[i] for i in indices]
        items = {image: self.dataset[image] for image in {image for image, _ in pairs}}
        return Batch(
            image=torch.stack([items[image].image for image, _ in pairs]),
            target=torch.stack([items[image].labels[k] for image, k in pairs]),
            mask=torch.stack([items[image].masks[k] for image, k in pairs]),
            keys=[f"{self.split}/{image}/{k}" for image, k in pairs],
        )


class GridItems:
    """Items of the grid split: 2 x 2 grids of one-object test images of four classes.

    Each cell is an image of the one-object split's kind, drawn from its own seed:
    grid ``i`` takes the first four images of distinct classes among the test
    images ``GRID_OFFSET + 32 i, ..., GRID_OFFSET + 32 i + 31`` of ``seed`` (a
    stream disjoint from the one-object split's first million images), in that
    order, row by row. An item is one grid explained for one cell's class; its
    mask is that cell's object and :attr:`Batch.cell` the cell. Sharding or
    reordering never changes an item.

    Args:
        images (int): number of grids (each gives four items).
        seed (int): data seed. Default: 0
        cell_size (int): side of a cell in pixels; a grid is twice as wide.
            Default: 64
    """

    split = "grid"
    #: Index of the first test image the cells are drawn from.
    GRID_OFFSET = 1_000_000
    #: Candidate images per grid, scanned for four distinct classes.
    CANDIDATES = 32
    SIDE = 2

    def __init__(self, images: int, seed: int = 0, cell_size: int = 64) -> None:
        self.cell_size = cell_size
        self.cells = ShapesDataset(
            "test",
            images * self.CANDIDATES,
            objects=1,
            seed=seed,
            image_size=cell_size,
            offset=self.GRID_OFFSET,
        )
        self.keys = [(image, k) for image in range(images) for k in range(self.SIDE**2)]
        self.items_per_image = self.SIDE**2

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def description(self) -> str:
        """What the items are, in words."""
        grids = _count(len(self.keys) // self.items_per_image, "grid")
        return f"{grids} of 2 x 2 one-object images, each explained for every cell's class"

    def describe(self, target: int) -> str:
        """The name of class ``target``."""
        return list(CLASSES)[target]

    def grid(self, image: int) -> tuple[Tensor, Tensor, Tensor]:
        """Grid ``image``: ``(3, H, W)`` picture, ``(4,)`` cell classes, ``(4, H, W)`` masks."""
        chosen: dict[int, Tensor] = {}
        masks: list[Tensor] = []
        for candidate in range(image * self.CANDIDATES, (image + 1) * self.CANDIDATES):
            item = self.cells[candidate]
            label = int(item.labels[0])
            if label not in chosen:
                chosen[label] = item.image
                masks.append(item.masks[0])
            if len(chosen) == self.SIDE**2:
                break
        else:  # pragma: no cover - 32 draws of 6 classes miss 4 distinct ones with p < 1e-8
            raise RuntimeError(f"grid {image}: fewer than four classes among the candidates")
        width = self.SIDE * self.cell_size
        picture = torch.zeros(3, width, width)
        object_masks = torch.zeros(self.SIDE**2, width, width, dtype=torch.bool)
        for k, (cell_image, mask) in enumerate(zip(chosen.values(), masks, strict=True)):
            cell = self.cell_mask(k)  # a block: its pixels in row-major order
            picture[:, cell] = cell_image.flatten(1)
            object_masks[k, cell] = mask.flatten()
        return picture, torch.tensor(list(chosen)), object_masks

    def cell_mask(self, k: int) -> Tensor:
        """The pixels of cell ``k`` (row by row), ``(H, W)`` bool."""
        size, side = self.cell_size, self.SIDE
        mask = torch.zeros(side * size, side * size, dtype=torch.bool)
        mask[k // side * size : (k // side + 1) * size, k % side * size : (k % side + 1) * size] = 1
        return mask

    def load(self, indices: Sequence[int]) -> Batch:
        pairs = [self.keys[i] for i in indices]
        grids = {image: self.grid(image) for image in {image for image, _ in pairs}}
        return Batch(
            image=torch.stack([grids[image][0] for image, _ in pairs]),
            target=torch.stack([grids[image][1][k] for image, k in pairs]),
            mask=torch.stack([grids[image][2][k] for image, k in pairs]),
            keys=[f"{self.split}/{image}/{k}" for image, k in pairs],
            cell=torch.stack([self.cell_mask(k) for _, k in pairs]),
        )


class FolderItems:
    """Items of an ``ImageFolder`` with a boxes file (see the module docstring).

    Args:
        root (Path): the ``ImageFolder`` directory.
        boxes (Path): the JSON boxes file.
        image_size (int): side of the square the model sees. As torchvision's
            classifiers expect, the shorter side is resized to ``image_size`` and
            the centre cropped to a square, so an image keeps its proportions;
            boxes follow, clipped to the crop (a box cropped away leaves an empty
            mask, which the localisation metrics score as NaN).
    """

    split = "folder"
    items_per_image = 1

    def __init__(self, root: Path, boxes: Path, image_size: int = 224) -> None:
        folder = ImageFolder(str(root))
        annotations = json.loads(Path(boxes).read_text())
        self.image_size = image_size
        self.samples = []
        for path, class_index in folder.samples:
            key = Path(path).relative_to(root).as_posix()
            if key in annotations:
                entry = annotations[key]
                self.samples.append(
                    (path, key, int(entry.get("label", class_index)), entry["boxes"])
                )
        if not self.samples:
            raise ValueError(f"no image of {root} has an entry in {boxes}")
        self._loader = folder.loader
        self._transform = v2.Compose(
            [
                v2.ToImage(),
                v2.ToDtype(torch.float32, scale=True),
                v2.Resize(image_size),
                v2.CenterCrop(image_size),
            ]
        )
        self.root = Path(root)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def description(self) -> str:
        """What the items are, in words."""
        return f"{_count(len(self), 'image')} of {self.root} with boxes, one item each"

    def describe(self, target: int) -> str:
        """The model's class index (its names are not known here)."""
        return f"class {target}"

    def load(self, indices: Sequence[int]) -> Batch:
        images, targets, masks, keys = [], [], [], []
        for index in indices:
            path, key, label, boxes = self.samples[index]
            picture = self._loader(path)
            width, height = picture.size
            box_tensor = tv_tensors.BoundingBoxes(
                torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
                format="XYXY",
                canvas_size=(height, width),
            )
            image, box_tensor = self._transform(picture, box_tensor)
            images.append(image)
            size = (self.image_size, self.image_size)
            masks.append(boxes_to_mask([box_tensor.as_subclass(Tensor)], size)[0])
            targets.append(label)
            keys.append(key)
        return Batch(torch.stack(images), torch.tensor(targets), torch.stack(masks), keys)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' if number != 1 else ''}"


def shapes_splits(
    images: int, pairs: int, grids: int, seed: int
) -> list[Union[ShapesItems, GridItems]]:
    """The shapes data set's splits with items: ``images`` one-object images, ``pairs``
    two-object images and ``grids`` 2 x 2 grids (a count of 0 leaves its split out)."""
    splits = [
        ShapesItems("single", images, seed),
        ShapesItems("pair", pairs, seed),
        GridItems(grids, seed),
    ]
    return [split for split in splits if len(split)]
