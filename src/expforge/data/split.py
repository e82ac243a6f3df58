"""Deterministic stratified selection and splitting, shared by every step that samples or splits a dataset.

Class shares are apportioned by largest remainder, so every class stays within one item of its exact proportion
and the result is a pure function of the labels, the sizes and the seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def apportion(total: int, weights: Sequence[float], caps: Sequence[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder), none above its cap.

    Ties go to the lower index, so the result is a pure function of its inputs. Stratified selection and
    splitting both use it, which keeps every class's share within one item of its exact proportion.
    """
    if total > sum(caps):
        raise ValueError(f"cannot apportion {total} over caps summing to {sum(caps)}")
    counts = [0] * len(weights)
    remaining = total
    active = [i for i, cap in enumerate(caps) if cap > 0 and weights[i] > 0]
    while remaining > 0 and active:
        weight_sum = float(sum(weights[i] for i in active))
        exact = {i: remaining * weights[i] / weight_sum for i in active}
        give = {i: min(int(exact[i]), caps[i] - counts[i]) for i in active}
        leftover = remaining - sum(give.values())
        for i in sorted(active, key=lambda i: (-(exact[i] - int(exact[i])), i)):
            if leftover == 0:
                break
            if counts[i] + give[i] < caps[i]:
                give[i] += 1
                leftover -= 1
        for i in active:
            counts[i] += give[i]
        remaining = total - sum(counts)
        active = [i for i in active if counts[i] < caps[i]]
    if remaining:
        raise ValueError(f"cannot apportion {total} with positive weights only over {len(weights)} groups")
    return counts


def stratified_sample(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``count`` items whose class mix follows ``labels``'s (within one per class), chosen by ``rng``.

    Each class's indices are shuffled by ``rng`` in class order, so the choice depends only on the labels, the
    count and the seed. The result is sorted.
    """
    classes = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in classes]
    sizes = [len(m) for m in members]
    quotas = apportion(count, sizes, sizes)
    chosen = [rng.permutation(m)[:q] for m, q in zip(members, quotas, strict=True)]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def stratified_split(
    labels: np.ndarray, fractions: Mapping[str, float], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Assign every index of ``labels`` to a split: ``fractions`` gives the non-train splits' shares.

    Split sizes are rounded once globally and then apportioned per class, so small datasets still get their
    val/test rows; whatever is left of each class goes to ``train``.
    """
    classes = np.unique(labels)
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    free = [len(m) for m in members]
    taken = [0] * len(members)
    result: dict[str, np.ndarray] = {}
    for split, fraction in fractions.items():
        total = min(round(len(labels) * fraction), sum(free))
        quotas = apportion(total, [len(m) for m in members], free)
        parts = [m[t : t + q] for m, t, q in zip(members, taken, quotas, strict=True)]
        result[split] = np.sort(np.concatenate(parts))
        taken = [t + q for t, q in zip(taken, quotas, strict=True)]
        free = [f - q for f, q in zip(free, quotas, strict=True)]
    result["train"] = np.sort(np.concatenate([m[t:] for m, t in zip(members, taken, strict=True)]))
    return result
