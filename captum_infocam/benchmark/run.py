"""The benchmark run: every method on every metric, sharded with ``torch.distributed``.

Items are cut into batches once, the same way for any number of processes; under
``torchrun`` process ``r`` of ``w`` takes batches ``r, r + w, ...`` and rank 0
gathers the per-item records. A batch is computed identically wherever it runs,
so one process and many give the same numbers.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import math
import os
import textwrap
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Sequence, Union

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from captum_infocam import DSIBSettings, InfoCAM, PriorStatistics
from captum_infocam.benchmark.cli import add_item_counts, count, positive
from captum_infocam.benchmark.clock import timed
from captum_infocam.benchmark.data import reference_images
from captum_infocam.benchmark.items import Batch, FolderItems, GridItems, ShapesItems, shapes_splits
from captum_infocam.benchmark.methods import (
    DEFAULT_METHODS,
    METHODS,
    SLOW_METHODS,
    Explainer,
    check_methods,
)
from captum_infocam.benchmark.zoo import (
    ARCHITECTURES,
    QUOTED_ROLES,
    layer_name,
    load_model,
    weights_path,
)
from captum_infocam.metrics import (
    average_drop,
    average_gain,
    average_increase,
    confidence_metrics,
    deletion_auc,
    energy_pointing_game,
    grid_pointing_game,
    improved_average_drop,
    improved_average_increase,
    insertion_auc,
    pointing_game,
    road_least_relevant_first,
    road_most_relevant_first,
)
from captum_infocam.metrics.road import DEFAULT_FRACTIONS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "COLUMN_HELP",
    "METRICS",
    "METRIC_COLUMNS",
    "PROGRESS_FORMAT",
    "add_arguments",
    "advance",
    "draw_figure",
    "evaluate",
    "figure_items",
    "header",
    "identical_rows",
    "infocam_settings",
    "legend",
    "mean_and_error",
    "parse_fractions",
    "scoring_tasks",
    "summarise",
]

Items = Union[ShapesItems, FolderItems, GridItems]
#: ``prior=dataset`` in ``--infocam`` (and the sweep): the layer's statistics over
#: reference images (:func:`_reference_statistics`).
DATASET_PRIOR = "dataset"


@dataclass(frozen=True)
class MetricColumn:
    """A column of the table: the record's key, its label, and the metric function."""

    key: str
    label: str
    function: Callable[..., Any]

    @property
    def higher_is_better(self) -> bool:
        """The function's own ``higher_is_better``."""
        return bool(self.function.higher_is_better)  # type: ignore[attr-defined]

    @property
    def heading(self) -> str:
        """The label with the better direction, e.g. ``"Del ↓"``."""
        return f"{self.label} {'↑' if self.higher_is_better else '↓'}"


#: The table's metric columns, in order.
METRICS = [
    MetricColumn("average_drop", "AD", average_drop),
    MetricColumn("average_increase", "AI", average_increase),
    MetricColumn("average_gain", "AG", average_gain),
    MetricColumn("improved_average_drop", "iAD", improved_average_drop),
    MetricColumn("improved_average_increase", "iAI", improved_average_increase),
    MetricColumn("insertion", "Ins", insertion_auc),
    MetricColumn("deletion", "Del", deletion_auc),
    MetricColumn("road_most_relevant_first", "MoRF", road_most_relevant_first),
    MetricColumn("road_least_relevant_first", "LeRF", road_least_relevant_first),
    MetricColumn("energy_pointing_game", "EPG", energy_pointing_game),
    MetricColumn("pointing_game", "PG", pointing_game),
    MetricColumn("grid_pointing_game", "GPG", grid_pointing_game),
]
#: The columns by record key.
METRIC_COLUMNS = {column.key: column for column in METRICS}

#: The progress bars' layout: items done as whole numbers (a bar moves by fractions of a
#: batch, after its maps and after each metric).
PROGRESS_FORMAT = "{l_bar}{bar}| {n:.0f}/{total_fmt} [{elapsed}<{remaining}]"

#: The columns that :func:`~captum_infocam.metrics.confidence_metrics` computes together.
_CONFIDENCE_KEYS = {
    "average_drop",
    "average_increase",
    "average_gain",
    "improved_average_drop",
    "improved_average_increase",
}

#: What each column of the table means, in one line; docs/metrics.md has the definitions.
COLUMN_HELP = {
    "seconds": "seconds per item to compute the map (the metrics not included)",
    "average_drop": "Average Drop: confidence lost on the image multiplied by the map",
    "average_increase": "Average Increase: share of items whose confidence rises on it",
    "average_gain": "Average Gain: confidence gained on it, as a share of what could be gained",
    "improved_average_drop": "improved AD: score lost keeping 1/16 to 1/2 of the image, beyond "
    "its jitter",
    "improved_average_increase": "improved AI: share of rises beyond their jitter, same budgets",
    "insertion": "insertion AUC: confidence as the most salient pixels are inserted first",
    "deletion": "deletion AUC: confidence as the most salient pixels are deleted first",
    "road_most_relevant_first": "ROAD: confidence as the most salient pixels are imputed first",
    "road_least_relevant_first": "ROAD: confidence as the least salient pixels are imputed first",
    "energy_pointing_game": "energy pointing game: share of the map's positive energy on the "
    "object",
    "pointing_game": "pointing game: share of items whose map peaks on the explained object",
    "grid_pointing_game": "grid pointing game: share of the map in the explained cell (grids)",
}


def scoring_tasks(
    model: nn.Module,
    batch: Batch,
    maps: torch.Tensor,
    n_steps: int,
    tolerance: int,
    road_fractions: Sequence[float] = DEFAULT_FRACTIONS,
    metrics: Collection[str] | None = None,
) -> list[Callable[[], dict[str, torch.Tensor]]]:
    """The metrics of :data:`METRICS` (or those whose keys are in ``metrics``) for one batch
    of maps, as calls that each return ``{key: (N,)}``: the confidence metrics together, then
    one call per metric; the grid pointing game only for grid items (those with a
    :attr:`Batch.cell`)."""
    wanted = {m.key for m in METRICS} if metrics is None else set(metrics)
    image, target = batch.image, batch.target
    tasks: list[Callable[[], dict[str, torch.Tensor]]] = []
    if wanted & _CONFIDENCE_KEYS:
        keys = wanted & _CONFIDENCE_KEYS
        tasks.append(
            lambda: {
                k: v
                for k, v in confidence_metrics(model, image, maps, target=target).items()
                if k in keys
            }
        )
    calls: dict[str, Callable[[], torch.Tensor]] = {
        "insertion": lambda: insertion_auc(model, image, maps, target=target, n_steps=n_steps),
        "deletion": lambda: deletion_auc(model, image, maps, target=target, n_steps=n_steps),
        "road_most_relevant_first": lambda: road_most_relevant_first(
            model, image, maps, target=target, fractions=road_fractions
        ),
        "road_least_relevant_first": lambda: road_least_relevant_first(
            model, image, maps, target=target, fractions=road_fractions
        ),
        "energy_pointing_game": lambda: energy_pointing_game(maps, batch.mask),
        "pointing_game": lambda: pointing_game(maps, batch.mask, tolerance=tolerance),
    }
    if batch.cell is not None:
        calls["grid_pointing_game"] = lambda: grid_pointing_game(maps, batch.cell)
    for key, call in calls.items():
        if key in wanted:
            tasks.append(lambda key=key, call=call: {key: call()})
    return tasks


def evaluate(
    model: nn.Module,
    items: Items,
    explainers: dict[str, Explainer],
    batch_size: int,
    n_steps: int,
    tolerance: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
    road_fractions: Sequence[float] = DEFAULT_FRACTIONS,
    keep: Collection[int] = (),
    metrics: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Per-item records of this process's share of ``items``, one method after another,
    each with its own progress bar, which moves after the maps and after each metric of a
    batch (a batch's items share its steps); every metric of :data:`METRICS`, or those
    whose keys are in ``metrics``. Each method first explains one item untimed (a warm-up), so that
    ``"seconds"`` is the cost of a call, not of the first call's set-up.

    The record of an item whose index is in ``keep`` also holds, under ``"map"``, the
    map that was scored (on the CPU), so that a figure shows what the table scored.
    """
    starts = range(0, len(items), batch_size)
    mine = [range(s, min(s + batch_size, len(items))) for s in starts][rank::world_size]
    records: list[dict[str, Any]] = []
    for name, explain in explainers.items():
        with tqdm(
            total=sum(len(indices) for indices in mine),
            desc=f"{items.split} · {name}",
            unit="item",
            bar_format=PROGRESS_FORMAT,
            disable=rank != 0,
        ) as progress:
            finished = 0
            if mine:
                # Untimed warm-up on one item: a method's first call pays once for what every
                # later call reuses (InfoCAM traces the model), which is not its cost per item.
                explain(items.load(mine[0][:1]).to(device))
            for indices in mine:
                batch = items.load(indices).to(device)
                maps, seconds = timed(functools.partial(explain, batch), device)
                seconds /= len(indices)
                tasks = scoring_tasks(
                    model, batch, maps, n_steps, tolerance, road_fractions, metrics
                )
                # The bar moves after the maps and after each metric, and ends each batch on
                # a whole number of items (so that fractions cannot add up past the total).
                advance(progress, finished + len(indices) / (len(tasks) + 1))
                values: dict[str, list[float]] = {}
                for done, task in enumerate(tasks, 2):
                    values |= {k: v.tolist() for k, v in task().items()}
                    advance(progress, finished + len(indices) * done / (len(tasks) + 1))
                finished += len(indices)
                for row, (index, key) in enumerate(zip(indices, batch.keys, strict=True)):
                    record = {
                        "split": items.split,
                        "item": key,
                        "target": int(batch.target[row]),
                        "method": name,
                        "seconds": seconds,
                    } | {metric: values[metric][row] for metric in values}
                    if index in keep:
                        record["map"] = maps[row].detach().cpu()
                    records.append(record)
    return records


def advance(progress: tqdm, items: float) -> None:
    """Shows ``items`` done on the progress bar."""
    progress.n = items
    progress.refresh()


def mean_and_error(values: Sequence[float]) -> tuple[float, float]:
    """The mean of the values that are not NaN, and its standard error (NaN for fewer than 2)."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    if len(finite) < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
    return mean, math.sqrt(variance / len(finite))


def summarise(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """``{split: {method: {metric or "seconds": [mean, standard error]}}}``."""
    summary: dict[str, dict[str, dict[str, list[float]]]] = {}
    for split in dict.fromkeys(r["split"] for r in records):
        summary[split] = {}
        for method in dict.fromkeys(r["method"] for r in records):
            rows = [r for r in records if r["split"] == split and r["method"] == method]
            if rows:
                summary[split][method] = {
                    key: list(mean_and_error([r.get(key, math.nan) for r in rows]))
                    for key in ["seconds", *(m.key for m in METRICS)]
                }
    return summary


def markdown_table(split_summary: dict[str, dict[str, list[float]]], wide: bool = False) -> str:
    """One row per method, one column per metric that the split scores (the grid pointing
    game only on grids).

    By default each cell is the mean to 3 decimals without the leading zero (``.912``),
    to fit 120 columns, and a column's clear best is marked ``*``; with ``wide``, mean ±
    standard error, the clear best in bold. A clear best beats every other method by more
    than the larger of the two standard errors.
    """
    columns = [
        m for m in METRICS if any(not math.isnan(v[m.key][0]) for v in split_summary.values())
    ]
    header = "| method | s/img | " + " | ".join(m.heading for m in columns) + " |"
    lines = [header, "|" + " --- |" * (len(columns) + 2)]
    clear_best = {metric.key: _clear_best(split_summary, metric) for metric in columns}
    for method, values in split_summary.items():
        cells = [method, f"{values['seconds'][0]:.4f}"]
        for metric in columns:
            mean, error = values[metric.key]
            if math.isnan(mean):
                cells.append("–")  # not scored for this method
                continue
            best = clear_best[metric.key] == method
            if wide:
                text = f"{mean:.3f} ± {error:.3f}"
                cells.append(f"**{text}**" if best else text)
            else:
                # Without the leading zero of |mean| < 1, as in journal tables: 12 columns fit.
                text = f"{mean:.3f}".replace("0.", ".", 1) if abs(mean) < 1 else f"{mean:.3f}"
                cells.append(f"{text}*" if best else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def identical_rows(split_summary: dict[str, dict[str, list[float]]]) -> list[str]:
    """A line for each pair of methods whose means agree on every metric to the printed
    3 decimals, saying why where the reason is known (XGrad-CAM is Grad-CAM behind global
    average pooling)."""
    printed = {
        method: tuple(f"{values[m.key][0]:.3f}" for m in METRICS)
        for method, values in split_summary.items()
    }
    notes = []
    methods = list(printed)
    for position, first in enumerate(methods):
        for second in methods[position + 1 :]:
            if printed[first] != printed[second]:
                continue
            note = f"{first} and {second} score the same on every metric"
            if {first, second} == {"Grad-CAM", "XGrad-CAM"}:
                note += (
                    ": where only global average pooling and a linear layer follow the layer, "
                    "the gradient is the same at every position and XGrad-CAM's weights "
                    "equal Grad-CAM's"
                )
            notes.append(note)
    return notes


def _clear_best(
    split_summary: dict[str, dict[str, list[float]]], metric: MetricColumn
) -> str | None:
    """The method whose mean on ``metric`` beats every other's by more than the larger of the
    two standard errors; ``None`` where the best is within the error of another."""
    scored = {
        method: values[metric.key]
        for method, values in split_summary.items()
        if not math.isnan(values[metric.key][0])
    }
    if not scored:
        return None
    sign = 1.0 if metric.higher_is_better else -1.0
    best = max(scored, key=lambda method: sign * scored[method][0])
    mean, error = scored[best]
    for method, (other, other_error) in scored.items():
        margin = max(_finite(error), _finite(other_error))
        if method != best and sign * (mean - other) <= margin:
            return None
    return best


def _finite(error: float) -> float:
    return 0.0 if math.isnan(error) else error


def parse_fractions(text: str) -> tuple[float, ...]:
    """``"0.1,0.5"`` to ``(0.1, 0.5)``: the ``--road-fractions`` argument."""
    return tuple(float(part) for part in text.split(","))


def infocam_settings(pairs: Sequence[str]) -> tuple[DSIBSettings, bool]:
    """``["beta=2", "readout=bits"]`` (the ``--infocam`` argument) to InfoCAM's settings,
    and whether they ask for the data-set prior (``prior=dataset``, filled in once the
    layer's statistics are known). Exits with a one-line message on a bad pair."""
    names = [field.name for field in fields(DSIBSettings)]
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"--infocam takes key=value pairs, got {pair!r}")
        if key not in names:
            raise SystemExit(f"--infocam: unknown setting {key!r}; choose from {names}")
        values[key] = _setting_value(key, text)
    dataset_prior = values.get("prior") == DATASET_PRIOR
    if dataset_prior:
        del values["prior"]
    try:
        return DSIBSettings(**values), dataset_prior
    except (TypeError, ValueError) as error:
        raise SystemExit(f"--infocam: {error}") from None


def _setting_value(key: str, text: str) -> Any:
    """A setting's text as the value ``DSIBSettings`` takes: a number, ``None``, a dtype
    for ``autocast_dtype`` (``bfloat16``), or the text itself."""
    if text == "None":
        return None
    if key == "autocast_dtype":
        return getattr(torch, text, text)
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _distributed(device_arg: str | None) -> tuple[int, int, torch.device]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if device_arg is not None:
        device = torch.device(device_arg)
    elif torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    else:
        device = torch.device("cpu")
    return rank, (dist.get_world_size() if dist.is_initialized() else 1), device


def _gather(records: list[dict[str, Any]], rank: int, world_size: int) -> list[dict[str, Any]]:
    if world_size == 1:
        return records
    shards: list[Any] = [None] * world_size if rank == 0 else []
    dist.gather_object(records, shards if rank == 0 else None, dst=0)
    return [record for shard in shards for record in shard] if rank == 0 else []


def _load_setup(args: argparse.Namespace) -> tuple[nn.Module, nn.Module, str, list[Items]]:
    """The model, the explained layer, a tag for the outputs, and the item sources."""
    if args.image_folder is not None:
        import torchvision

        if args.model is None or args.boxes is None:
            raise SystemExit("--image-folder needs --model and --boxes")
        network = torchvision.models.get_model(
            args.model, weights=None, num_classes=args.num_classes
        )
        if args.weights is not None:
            _load_weights(network, args)
        try:
            layer = network.get_submodule(args.layer)
        except AttributeError:
            raise SystemExit(
                f"--layer must name a module of {args.model} (e.g. layer4), got {args.layer!r}"
            ) from None
        if args.normalize == "imagenet":
            normalize = torchvision.transforms.v2.Normalize(
                [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
            )
            network = nn.Sequential(normalize, network)
        items: list[Items] = [FolderItems(args.image_folder, args.boxes, args.image_size)]
        return network.eval(), layer, f"{args.model}_{args.layer}", items
    try:
        name = layer_name(args.arch, args.layer)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    model = load_model(args.arch)
    splits = shapes_splits(args.images, args.pairs, args.grids, args.seed)
    return model, model.get_submodule(name), f"{args.arch}_{name}", splits


def _load_weights(network: nn.Module, args: argparse.Namespace) -> None:
    """Loads ``--weights`` into ``network``; a shape mismatch names ``--num-classes``."""
    state = torch.load(args.weights, map_location="cpu", weights_only=True)
    expected = network.state_dict()
    mismatched = [
        f"{key} {tuple(value.shape)} (the model has {tuple(expected[key].shape)})"
        for key, value in state.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if mismatched:
        raise SystemExit(
            f"--weights {args.weights} do not fit {args.model} with --num-classes "
            f"{args.num_classes}: {', '.join(mismatched)}; pass the number of classes "
            "the weights were trained for with --num-classes"
        )
    network.load_state_dict(state)


def _reference_statistics(
    model: nn.Module,
    layer: nn.Module,
    sources: list[Items],
    args: argparse.Namespace,
    device: torch.device,
) -> PriorStatistics:
    """The layer's statistics over reference images: the shapes validation split, or the
    folder's own images for real data."""
    if args.image_folder is None:
        batches = (images.to(device) for images in reference_images(args.seed))
    else:
        folder = sources[0]
        batches = (
            folder.load(range(s, min(s + 32, len(folder)))).image.to(device)
            for s in range(0, len(folder), 32)
        )
    return InfoCAM(model, layer).fit_statistics(batches)


def header(
    args: argparse.Namespace,
    tag: str,
    sources: list[Items],
    device: torch.device,
    world_size: int,
) -> str:
    """What a run measures, printed before it starts."""
    if args.image_folder is None:
        name, origin = args.arch, f"shipped with the package ({weights_path(args.arch).name})"
    else:
        name, origin = args.model, f"weights {args.weights or 'random (no --weights)'}"
    methods = args.methods
    lines = [
        f"Benchmark: {name}, {origin}, explained at layer {tag.removeprefix(name + '_')}",
        "Splits:",
        *(f"  {source.split}: {len(source)} items, {source.description}" for source in sources),
        f"Methods: {', '.join(methods)}",
    ]
    skipped = [method for method in SLOW_METHODS if method not in methods]
    if skipped:
        lines.append(
            f"  not run (slow on a CPU): {', '.join(skipped)}; add with "
            f"--methods {','.join([*methods, *skipped])}"
        )
    lines += [
        f"InfoCAM settings: {' '.join(args.infocam) or 'the defaults of InfoCAM.attribute'}",
        f"Metrics: {', '.join(m.label for m in METRICS)}, explained under the tables "
        "(definitions: docs/metrics.md); insertion and deletion in "
        f"{args.n_steps} steps, pointing-game tolerance {args.tolerance} px",
        f"Device: {device}, {world_size} process(es), {torch.get_num_threads()} thread(s) each",
        f"Output folder: {args.out}",
    ]
    return "\n".join(lines)


def legend(wide: bool = False) -> str:
    """What each column of :func:`markdown_table` (``wide`` or not) means, one line each."""
    columns = [("s/img", "seconds"), *((m.label, m.key) for m in METRICS)]
    width = max(len(label) for label, _ in columns)
    summary = (
        ["mean ± standard error over items; in bold, a", "column's best"]
        if wide
        else ["mean over items (--wide adds its standard error);", "*: a column's best"]
    )
    return "\n".join(
        [
            *(f"{label:<{width}}  {COLUMN_HELP[key]}" for label, key in columns),
            f"↑ higher is better, ↓ lower is better; {summary[0]}",
            f"{summary[1]} where it beats every other method by more than the standard errors;",
            "–: not scored for that method. Definitions: docs/metrics.md",
        ]
    )


#: Font size of the figure's title, in points.
TITLE_POINTS = 9


def figure_items(sources: list[Items]) -> tuple[Items, list[int]]:
    """The figure's example: the first image of the split with the most objects per image,
    explained for each of its classes, or the first four items of a one-object split."""
    source = max(sources, key=lambda s: s.items_per_image)
    count = source.items_per_image if source.items_per_image > 1 else 4
    return source, list(range(min(count, len(source))))


def draw_figure(source: Items, indices: list[int], records: list[dict[str, Any]]) -> Figure:
    """The example's maps, each method's as it was scored (the records' ``"map"``), over
    the example's images with the explained object outlined."""
    from captum_infocam.visualization import compare_methods

    batch = source.load(indices)
    shown = {(r["item"], r["method"]): r["map"] for r in records if "map" in r}
    methods = dict.fromkeys(method for _, method in shown)
    maps = {m: torch.stack([shown[key, m] for key in batch.keys]) for m in methods}
    # An item's key is its image's, and for several items per image, the object's after a "/".
    images = [key.rsplit("/", 1)[0] if source.items_per_image > 1 else key for key in batch.keys]
    titles = [
        f"{image}: for {source.describe(int(target))}"
        for image, target in zip(images, batch.target, strict=True)
    ]
    figure = compare_methods(batch.image, maps, batch.mask, row_titles=titles, use_pyplot=False)
    if len(indices) == source.items_per_image > 1:
        title = (
            "One image, explained once for each of its classes (a row each); "
            "the outline is the explained class's object"
        )
        # Wrapped to the figure's width (about 0.6 em per character): a figure of two
        # methods is narrower than the sentence.
        characters = int(figure.get_figwidth() * 72 / (0.6 * TITLE_POINTS))
        figure.suptitle(textwrap.fill(title, characters), fontsize=TITLE_POINTS)
    return figure


def _run(args: argparse.Namespace) -> None:
    rank, world_size, device = _distributed(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        check_methods(args.methods)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if args.image_folder is None and not (args.images or args.pairs or args.grids):
        raise SystemExit("--images, --pairs and --grids are all 0: nothing to explain")
    settings, dataset_prior = infocam_settings(args.infocam)
    model, layer, tag, sources = _load_setup(args)
    if rank == 0:
        print(header(args, tag, sources, device, world_size), flush=True)
    model.to(device)
    if dataset_prior:
        statistics = _reference_statistics(model, layer, sources, args, device)
        settings = replace(settings, prior=statistics)
    explainers = {name: METHODS[name](model, layer, settings) for name in args.methods}
    example, shown = figure_items(sources)
    records = []
    for source in sources:
        records += evaluate(
            model,
            source,
            explainers,
            args.batch_size,
            args.n_steps,
            args.tolerance,
            device,
            rank,
            world_size,
            road_fractions=args.road_fractions,
            keep=shown if source is example and not args.no_figure else (),
        )
    records = _gather(records, rank, world_size)
    if rank != 0:
        return
    splits = [source.split for source in sources]
    records.sort(
        key=lambda r: (splits.index(r["split"]), r["item"], args.methods.index(r["method"]))
    )
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_figure:
        draw_figure(example, shown, records).savefig(args.out / f"{tag}_figure.png", dpi=110)
        for record in records:
            record.pop("map", None)
    summary = summarise(records)
    (args.out / f"{tag}_summary.json").write_text(json.dumps(summary, indent=1))
    (args.out / f"{tag}_records.json").write_text(json.dumps(records))
    with open(args.out / f"{tag}_records.csv", "w", newline="") as handle:
        # Grid records carry one more metric than the others: the union of the keys.
        fields = list(dict.fromkeys(key for record in records for key in record))
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    for split, split_summary in summary.items():
        count = sum(r["split"] == split for r in records) // len(args.methods)
        print(f"\n### {split} ({count} items)\n")
        print(markdown_table(split_summary, args.wide))
        for note in identical_rows(split_summary):
            print("\n" + textwrap.fill(f"{note}.", 100))
    print(f"\n{legend(args.wide)}\n")
    if not args.no_figure:
        print(f"figure: {args.out / f'{tag}_figure.png'}")
    print(f"per-item results: {args.out / f'{tag}_records.csv'}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``run`` command's arguments and handler."""
    parser.add_argument(
        "--arch", choices=sorted(ARCHITECTURES), default="resnet", help="the shipped network"
    )
    parser.add_argument(
        "--layer",
        default="last",
        help=QUOTED_ROLES + " or a module name (torchvision: e.g. layer4)",
    )
    # The defaults keep make demo to a few minutes of a 2-core CPU; docs/benchmark.md's
    # tables use --images 100 --pairs 50 --grids 25.
    add_item_counts(parser, images=50, pairs=25, grids=5)
    parser.add_argument(
        "--methods",
        type=lambda s: s.split(","),
        default=DEFAULT_METHODS,
        help="comma-separated, from: "
        + ", ".join(METHODS)
        + f"; default: {','.join(DEFAULT_METHODS)} (slow on a CPU: {', '.join(SLOW_METHODS)})",
    )
    parser.add_argument(
        "--infocam",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="InfoCAM's DSIBSettings, e.g. beta=2 readout=bits (prior=dataset: the layer's "
        "statistics over reference images)",
    )
    parser.add_argument("--batch-size", type=positive, default=25, help="items per call")
    parser.add_argument("--n-steps", type=positive, default=16, help="insertion/deletion steps")
    parser.add_argument(
        "--road-fractions",
        type=parse_fractions,
        default=DEFAULT_FRACTIONS,
        help="comma-separated fractions ROAD removes (default 0.1,...,0.9)",
    )
    parser.add_argument(
        "--tolerance",
        type=int,
        default=4,
        help="pointing-game tolerance in pixels (15 at 224 px is 4 at 64 px)",
    )
    parser.add_argument("--seed", type=count, default=0, help="data seed (0: the reported split)")
    parser.add_argument(
        "--device", default=None, help="e.g. cuda:1 (default: CUDA where available, else the CPU)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--out", type=Path, default=Path("results"), help="folder for the records and the figure"
    )
    parser.add_argument("--no-figure", action="store_true", help="draw no figure")
    parser.add_argument(
        "--wide",
        action="store_true",
        help="tables with each mean's standard error (wider than 120 columns)",
    )
    real = parser.add_argument_group("real data (instead of the shapes data set)")
    real.add_argument("--image-folder", type=Path, default=None, help="an ImageFolder root")
    real.add_argument("--boxes", type=Path, default=None, help="JSON boxes file (see items.py)")
    real.add_argument("--model", default=None, help="a torchvision classifier name, e.g. resnet50")
    real.add_argument("--weights", type=Path, default=None, help="its state_dict file")
    real.add_argument(
        "--num-classes", type=positive, default=1000, help="classes the weights were trained for"
    )
    real.add_argument(
        "--image-size", type=positive, default=224, help="the shorter side, then a centre crop"
    )
    real.add_argument(
        "--normalize",
        choices=["imagenet", "none"],
        default="imagenet",
        help="input normalisation in front of the model",
    )
    parser.set_defaults(handler=_run)
