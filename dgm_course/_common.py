"""What the library's modules share: argument checks, seeded generators and two constants.

Private to the library (the public :func:`check_input` is re-exported by :mod:`dgm_course.flows`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["LOG_2PI", "Bounds", "check_input", "check_count", "check_seed", "generator"]

LOG_2PI = math.log(2 * math.pi)
#: A 2D window ``((x1_min, x1_max), (x2_min, x2_max))``.
Bounds = tuple[tuple[float, float], tuple[float, float]]


def check_input(x: Tensor, event_shape: Sequence[int] | None, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a floating tensor of shape ``(batch, *event_shape)``.

    A ``None`` entry of ``event_shape`` accepts any size along that axis (used by convolutional
    flows whose spatial size is free).
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating tensor (float32 or float64), got dtype {x.dtype}")
    if event_shape is None:
        return
    expected = "(batch, " + ", ".join("*" if d is None else str(d) for d in event_shape) + ")"
    if x.dim() != 1 + len(event_shape):
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)} (rank {x.dim()})")
    for got, want in zip(x.shape[1:], event_shape):
        if want is not None and got != want:
            raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")


def check_count(n: object, name: str, minimum: int = 1) -> int:
    """``n`` as an ``int`` if it is an integer (Python or NumPy, not a bool) of at least ``minimum``;
    else ``ValueError`` naming ``name``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def check_seed(seed: object) -> int:
    """``seed`` as an ``int`` if it is a non-negative integer; else ``ValueError``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def generator(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed`` (checked by :func:`check_seed`); ``None`` for ``None``
    (the global generator)."""
    return None if seed is None else torch.Generator().manual_seed(check_seed(seed))
