"""Shared fixtures: toy models with known answers and a model-state snapshot."""

from __future__ import annotations

import os
from dataclasses import dataclass

import matplotlib
import pytest
import torch
from torch import Tensor, nn

matplotlib.use("Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


@dataclass
class ModelState:
    """Everything a call must leave unchanged in a model."""

    tensors: dict[str, Tensor]
    requires_grad: dict[str, bool]
    training: dict[str, bool]
    grads: dict[str, Tensor | None]
    hooks: dict[str, int]

    @classmethod
    def of(cls, model: nn.Module) -> ModelState:
        return cls(
            tensors={k: v.detach().clone() for k, v in model.state_dict().items()},
            requires_grad={k: p.requires_grad for k, p in model.named_parameters()},
            training={k: m.training for k, m in model.named_modules()},
            grads={
                k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()
            },
            hooks={
                f"{k}.{d}": len(getattr(m, d))
                for k, m in model.named_modules()
                for d in _HOOK_DICTS
            },
        )

    def assert_unchanged(self, model: nn.Module) -> None:
        now = ModelState.of(model)
        assert now.tensors.keys() == self.tensors.keys()
        for key, value in self.tensors.items():
            assert torch.equal(now.tensors[key], value), f"{key} changed"
        assert now.requires_grad == self.requires_grad
        assert now.training == self.training
        for key, grad in self.grads.items():
            if grad is None:
                assert now.grads[key] is None, f"{key}.grad was written"
            else:
                assert torch.equal(now.grads[key], grad), f"{key}.grad changed"
        assert now.hooks == self.hooks, "hooks were left on the model"


class LinearHead(nn.Module):
    """``layer`` (identity) -> global average pooling -> linear, no bias.

    The target logit is exactly ``sum_c weight[target, c] * mean(A_c)``.
    """

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.layer = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.layer(x)).flatten(1))


class SmallCNN(nn.Module):
    """A fully convolutional feature extractor, then pooling and a linear head."""

    def __init__(self, classes: int = 3, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@pytest.fixture
def small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN().eval()


@pytest.fixture
def images() -> Tensor:
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def coloured_squares(
    n: int, size: int = 16, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Three classes: a 3x3 square lit in the red, green or blue channel, anywhere."""
    labels = torch.randint(0, 3, (n,), generator=generator)
    x = 0.3 * torch.randn(n, 3, size, size, generator=generator)
    rows = torch.randint(0, size - 3, (n,), generator=generator)
    cols = torch.randint(0, size - 3, (n,), generator=generator)
    for i in range(n):
        x[i, labels[i], rows[i] : rows[i] + 3, cols[i] : cols[i] + 3] += 2.0
    return x, labels


@pytest.fixture(scope="session")
def trained_cnn() -> SmallCNN:
    """:class:`SmallCNN` trained on :func:`coloured_squares` (about a second on a CPU)."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = SmallCNN(classes=3, width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        x, y = coloured_squares(32, generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval().requires_grad_(False)


def trained_copy(trained: SmallCNN, **to: object) -> SmallCNN:
    """A copy of :func:`trained_cnn`'s network moved by ``Module.to(**to)``, in eval mode."""
    model = SmallCNN(classes=3, width=8)
    model.load_state_dict(trained.state_dict())
    return model.to(**to).eval()  # type: ignore[arg-type]
