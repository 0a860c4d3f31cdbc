"""Stratified splits of sample indices (numpy only: the data writers use it without importing torch)."""
import numpy as np

__all__ = ['split_indices']


def split_indices(labels, val_fraction=0.2, seed=0, per_class=None):
    """ Stratified train/val split of sample indices.

    Each class keeps ``per_class`` images (all when None), shuffled by ``seed``, of which
    ``round(n * val_fraction)`` (at least one, at most n - 1) go to val.

    Returns:
        (train indices, val indices), both sorted int64 arrays.
    """
    if not 0. < val_fraction < 1.:
        raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}.')
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if per_class is not None:
        if per_class < 2:
            raise ValueError(f'per_class must be >= 2 (one train and one val image), got {per_class}.')
        if per_class > counts.min():
            raise ValueError(
                f'per_class={per_class} exceeds the smallest class ({counts.min()} images); '
                f'use per_class <= {counts.min()}.')
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in classes:  # ten classes: a loop is clearer than a vectorised group-by
        idx = rng.permutation(np.flatnonzero(labels == c))[:per_class]
        n_val = min(max(int(round(len(idx) * val_fraction)), 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
