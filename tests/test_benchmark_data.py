"""The shapes data set: deterministic per item, masks that match the drawing, no leakage."""

from __future__ import annotations

import pytest
import torch

from captum_infocam.benchmark.data import CLASSES, ShapesDataset
from captum_infocam.benchmark.items import GridItems, ShapesItems


def test_items_depend_only_on_their_index() -> None:
    long = ShapesDataset("test", 10, seed=3)
    short = ShapesDataset("test", 3, seed=3, offset=7)
    for index in range(3):
        a, b = long[7 + index], short[index]
        assert torch.equal(a.image, b.image) and torch.equal(a.masks, b.masks)
    assert not torch.equal(ShapesDataset("val", 1, seed=3)[0].image, long[0].image)
    assert not torch.equal(ShapesDataset("test", 1, seed=4)[0].image, long[0].image)


def test_items_are_well_formed() -> None:
    for objects in (1, 2):
        dataset = ShapesDataset("test", 20, objects=objects)
        for index in range(len(dataset)):
            item = dataset[index]
            assert item.image.shape == (3, 64, 64) and item.image.dtype == torch.float32
            assert 0 <= item.image.min() and item.image.max() <= 1
            assert item.labels.shape == (objects,) and len(set(item.labels.tolist())) == objects
            assert ((0 <= item.labels) & (item.labels < len(CLASSES))).all()
            assert item.masks.shape == (objects, 64, 64)
            assert (item.masks.flatten(1).sum(1) > 20).all(), "every object is visible"
            if objects == 2:
                assert not (item.masks[0] & item.masks[1]).any(), "objects do not overlap"
            rows, cols = item.masks[0].nonzero().unbind(1)
            x1, y1, x2, y2 = item.boxes[0].tolist()
            assert (x1, y1, x2, y2) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def test_the_mask_is_where_the_object_was_drawn() -> None:
    with_objects = ShapesDataset("test", 5)
    without = ShapesDataset("test", 5, draw_objects=False)
    for index in range(5):
        a, b = with_objects[index], without[index]
        changed = (a.image - b.image).abs().sum(0) > 1e-6
        assert torch.equal(a.masks[0], b.masks[0])
        # Pixel noise is drawn after the shape, so both images differ only on the object.
        assert torch.equal(changed, a.masks[0])


def test_classes_are_balanced() -> None:
    labels = torch.cat([ShapesDataset("train", 600)[i].labels for i in range(600)])
    counts = torch.bincount(labels, minlength=len(CLASSES)).float()
    assert (counts / counts.sum() - 1 / len(CLASSES)).abs().max() < 0.05


@pytest.mark.parametrize("split", ["single", "pair"])
def test_benchmark_items_explain_every_object(split: str) -> None:
    items = ShapesItems(split, images=3)
    assert len(items) == (3 if split == "single" else 6)
    batch = items.load(range(len(items)))
    dataset = items.dataset
    for row, key in enumerate(batch.keys):
        _, image, k = key.split("/")
        item = dataset[int(image)]
        assert batch.target[row] == item.labels[int(k)]
        assert torch.equal(batch.mask[row], item.masks[int(k)])


def test_grid_items_are_four_one_object_images_of_four_classes() -> None:
    items = GridItems(3, seed=2)
    assert len(items) == 12
    batch = items.load(range(12))
    assert batch.image.shape == (12, 3, 128, 128) and batch.cell.shape == (12, 128, 128)
    cells = ShapesDataset("test", 10**7, seed=2, offset=GridItems.GRID_OFFSET)
    for grid in range(3):
        rows = slice(4 * grid, 4 * grid + 4)
        assert len(set(batch.target[rows].tolist())) == 4, "four different classes"
        # Each cell is the first candidate image of its class, placed row by row.
        seen: set[int] = set()
        k = 0
        for candidate in range(grid * 32, grid * 32 + 32):
            item = cells[candidate]
            if int(item.labels[0]) in seen:
                continue
            seen.add(int(item.labels[0]))
            r, c = divmod(k, 2)
            block = (slice(64 * r, 64 * r + 64), slice(64 * c, 64 * c + 64))
            assert torch.equal(batch.image[4 * grid + k][:, block[0], block[1]], item.image)
            assert torch.equal(batch.mask[4 * grid + k][block], item.masks[0])
            assert batch.mask[4 * grid + k].sum() == item.masks[0].sum(), "mask inside its cell"
            assert (
                batch.cell[4 * grid + k][block].all() and batch.cell[4 * grid + k].sum() == 64 * 64
            )
            assert batch.target[4 * grid + k] == item.labels[0]
            k += 1
            if k == 4:
                break


def test_grid_items_depend_only_on_their_index() -> None:
    together = GridItems(4, seed=1).load(range(16))
    alone = GridItems(4, seed=1).load([13, 2])
    assert torch.equal(alone.image[0], together.image[13]) and alone.keys == [
        "grid/3/1",
        "grid/0/2",
    ]
    assert torch.equal(alone.mask[1], together.mask[2]) and torch.equal(
        alone.cell[1], together.cell[2]
    )


def test_an_unknown_split_names_the_splits_and_the_grids() -> None:
    with pytest.raises(ValueError, match=r"split must be 'single' or 'pair', got 'grid' \(grids: "):
        ShapesItems("grid", 1)
