"""The starting point of a training run: a random chain on a fixed mask, and the data."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from ..hdl.core.fp import float_format

__all__ = ["digits_data", "random_network"]


def random_network(sizes: Sequence[int], density: float, seed: int
                   ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """``(weights, biases, masks)`` of a chain ``sizes[0] -> sizes[1] -> ...``.

    Each layer's mask keeps ``round(density * I * J)`` positions (at least one) chosen
    uniformly without replacement (``numpy.random.default_rng(seed)``, layer by layer); the
    weights there are He-normal for the mask's mean fan-in,
    ``N(0, 2 / (density * J))``, as FP32; +0 elsewhere; biases +0.

    Raises
    ------
    ValueError
        For fewer than two sizes, a size below 1, or a density outside (0, 1].
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"a chain needs at least two sizes of at least 1, not {sizes}")
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], not {density}")
    rng = np.random.default_rng(seed)
    weights, biases, masks = [], [], []
    for J, I in itertools.pairwise(sizes):
        keep = max(1, round(density * I * J))
        mask = np.zeros(I * J, bool)
        mask[rng.choice(I * J, keep, replace=False)] = True
        mask = mask.reshape(I, J)
        w = rng.normal(0.0, np.sqrt(2.0 / (density * J)), (I, J)).astype(np.float32)
        weights.append(np.where(mask, w, np.float32(0)))
        biases.append(np.zeros(I, np.float32))
        masks.append(mask)
    return weights, biases, masks


def digits_data(dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, x_test, y_train, y_test``: the digits split of
    :func:`wafertile.network.digits.split`, the pixels ``0 .. 1`` (multiples of 1/16: exact
    in FP16 and BF16) as float32 numbers of ``dtype``."""
    from ..network.digits import split

    fmt = float_format(dtype)
    x_train, x_test, y_train, y_test = split()
    return (fmt.values(fmt.bits(x_train)), fmt.values(fmt.bits(x_test)),
            np.asarray(y_train, np.int64), np.asarray(y_test, np.int64))
