"""Does InfoCAM explain the model and the class? Sanity checks on the shipped networks."""

from __future__ import annotations

import pytest
import torch

from captum_infocam import DSIBSettings
from captum_infocam.benchmark.items import ShapesItems
from captum_infocam.benchmark.methods import METHODS
from captum_infocam.benchmark.sanity import randomised, rank_correlation
from captum_infocam.benchmark.zoo import LAYERS, load_model
from captum_infocam.dsib import FIT_DEFAULTS, GATE_TRAVEL, fit_dsib
from captum_infocam.likelihood import resolve_likelihood
from captum_infocam.metrics import saliency_maps
from captum_infocam.prior import prior_moments

pytestmark = pytest.mark.filterwarnings("ignore::captum_infocam.CollapsedFitWarning")


def _spearman_after_randomising_the_classifier(
    arch: str, role: str = "last", method: str = "InfoCAM", settings: DSIBSettings | None = None
) -> float:
    model = load_model(arch)
    batch = ShapesItems("single", 30, seed=0).load(range(30))
    layer = LAYERS[arch][role]

    def maps(network: torch.nn.Module) -> torch.Tensor:
        explain = METHODS[method](network, network.get_submodule(layer), settings)
        attr = explain(batch)
        return saliency_maps(attr, (64, 64), len(attr)).flatten(1)

    correlation = rank_correlation(maps(model), maps(randomised(model, ["fc"], seed=0)))
    return float(correlation.nanmean())


# vgg12, the deep plain network, fails the check with Grad-CAM too (docs/benchmark.md: 0.55
# and 0.66 for InfoCAM, 0.53 and 0.60 for Grad-CAM at its last and middle layers): a random
# linear read-out of its last stages still outlines the object. Strict: a fix shows up here.
_VGG12 = pytest.mark.xfail(strict=True, reason="a random classifier fools Grad-CAM too on vgg12")


@pytest.mark.parametrize("role", ["last", "middle"])
@pytest.mark.parametrize(
    "arch", ["resnet", "vgg", "resnet18", pytest.param("vgg12", marks=_VGG12), "vit"]
)
def test_randomising_the_classifier_changes_the_map(arch: str, role: str) -> None:
    # Adebayo et al. (2018): a map that survives a random classifier explains the input only.
    assert _spearman_after_randomising_the_classifier(arch, role) < 0.4


@pytest.mark.parametrize("arch", ["resnet", "vgg"])
def test_the_single_fit_survives_a_random_classifier(arch: str) -> None:
    # The single fit's positive weights outline the objects whatever the classifier does.
    single = DSIBSettings(contrast="none")
    assert _spearman_after_randomising_the_classifier(arch, settings=single) > 0.8


@pytest.mark.parametrize("arch", ["resnet", "vgg"])
def test_the_evidence_term_moves_the_weights(arch: str) -> None:
    # Remove the discriminative term of the loss (the log-odds of Z_d no longer depend on
    # the gates) with β and γ kept: the channel weights and maps must change substantially.
    model = load_model(arch)
    layer = model.get_submodule(LAYERS[arch]["last"])
    batch = ShapesItems("single", 16, seed=0).load(range(16))
    activations = []
    handle = layer.register_forward_hook(lambda module, args, out: activations.append(out))
    with torch.no_grad():
        model(batch.image)
    handle.remove()
    (value,) = activations
    mean, std = prior_moments("zero", value)
    head = torch.nn.Sequential(model.avgpool, torch.nn.Flatten(), model.fc)
    defaults = FIT_DEFAULTS["complement"]
    samples, steps, fits = defaults["n_samples"], defaults["steps"], 2
    index = batch.target.repeat_interleave(fits * 2 * samples)[:, None]
    target_log_odds = resolve_likelihood("softmax")

    def log_odds(z: torch.Tensor, rows: slice) -> torch.Tensor:
        return target_log_odds(head(z), index[rows])

    def without_evidence(z: torch.Tensor, rows: slice) -> torch.Tensor:
        per_row = log_odds(z, rows).view(-1, fits, 2, samples)  # sample, fit, stream, draw
        return torch.stack([per_row[:, :, 0].detach(), per_row[:, :, 1]], 2).flatten()

    settings = dict(n_samples=samples, steps=steps, lr=GATE_TRAVEL / steps, beta=1.0, gamma=1.0)
    weights, maps = [], []
    for function in (log_odds, without_evidence):
        fit = fit_dsib(
            value,
            function,
            mean,
            std,
            evidence="log_odds",
            complement=True,
            alpha_init=5.0,
            generator=torch.Generator().manual_seed(0),
            **settings,
        )
        weights.append(fit.gates - fit.complement.gates)
        maps.append((weights[-1][..., None, None] * value).sum(1).relu().flatten(1))
    changed = ((weights[0] - weights[1]).abs() > 0.5).float().mean()
    assert changed > 0.15, f"only {changed:.0%} of the channel weights moved"
    relative = (maps[0] - maps[1]).abs().amax(1) / maps[0].amax(1)
    assert relative.median() > 0.05
