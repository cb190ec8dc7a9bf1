"""Model outputs as the tensor of scores that InfoCAM and the metrics explain.

Captum's methods need ``forward_func`` to return a tensor. Many models return
something else, and InfoCAM and every metric of :mod:`captum_infocam.metrics`
take their scores from it with :func:`output_scores`:

* a tensor is used as it is;
* a dict (or any mapping) gives the tensor under the first key of
  :data:`SCORE_KEYS` that it holds: ``"logits"`` (Hugging Face ``transformers``
  outputs are mappings too), then ``"out"`` (torchvision's segmentation models);
* any other object gives its ``.logits`` tensor.

Anything else (a tuple, say) is refused with a ``TypeError``: wrap the model in a
function that returns the scores to explain, e.g. ``lambda x: model(x)[0]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["SCORE_KEYS", "output_scores"]

#: The keys a mapping output is searched for, in order.
SCORE_KEYS = ("logits", "out")


def output_scores(output: Any) -> Tensor:
    """Returns the score tensor of a model's ``output``.

    Args:
        output (Any): what the model returned: a tensor, a mapping with a tensor
            under a key of :data:`SCORE_KEYS`, or an object with a ``.logits``
            tensor (a Hugging Face ``ModelOutput``).

    Returns:
        The tensor of scores, unchanged.

    Raises:
        TypeError: if ``output`` is none of these.

    Examples::

        >>> from transformers import ViTConfig, ViTForImageClassification
        >>> model = ViTForImageClassification(ViTConfig(num_labels=3)).eval()
        >>> output_scores(model(torch.randn(1, 3, 224, 224))).shape
        torch.Size([1, 3])
    """
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        for key in SCORE_KEYS:
            if isinstance(output.get(key), Tensor):
                return output[key]
    elif isinstance(getattr(output, "logits", None), Tensor):
        return output.logits
    raise TypeError(
        f"forward_func returned {_describe(output)}; it must return the scores to explain: "
        "a tensor, an object with a .logits tensor (Hugging Face), or a dict with a "
        f"tensor under one of the keys {list(SCORE_KEYS)}. Otherwise wrap the model so "
        "that it returns them, e.g. lambda x: model(x)[0]"
    )


def _describe(output: Any) -> str:
    if isinstance(output, Mapping):
        return f"a {type(output).__name__} with keys {list(output)}"
    if isinstance(output, (tuple, list)):
        return f"a {type(output).__name__} of {len(output)} values"
    return f"a {type(output).__name__}"
