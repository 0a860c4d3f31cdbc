"""Holding out a validation split of the training set (the paper's protocol for choosing β)."""
from typing import Tuple

import torch.utils.data

from .data import split_indices
from .sampler import dataset_labels

__all__ = ['TransformSubset', 'holdout_split']


class TransformSubset(torch.utils.data.Subset):
    """Subset whose `transform` is the wrapped dataset's, so timm's loaders can assign it.

    Example:
        ```python
        val_set = TransformSubset(create_dataset('', root=root, split='train'), val_indices)
        loader = create_loader(val_set, ...)   # sets val_set.transform, i.e. the wrapped dataset's
        ```
    """

    @property
    def transform(self):
        return getattr(self.dataset, 'transform', None)

    @transform.setter
    def transform(self, value):
        self.dataset.transform = value


def holdout_split(
        train_set: torch.utils.data.Dataset,
        eval_set: torch.utils.data.Dataset,
        fraction: float,
        seed: int = 0,
) -> Tuple[TransformSubset, TransformSubset]:
    """Stratified, seeded split of the training set into a training and a held-out evaluation part.

    Each class keeps round(n * fraction) images (at least one, at most n - 1) for evaluation.

    Args:
        train_set: Training split with training transforms.
        eval_set: The same images as `train_set` (same order), for evaluation transforms.
        fraction: Held-out fraction in (0, 1), e.g. 0.1.
        seed: Seed of the per-class shuffles.

    Returns:
        (training subset of `train_set`, held-out subset of `eval_set`).

    Example:
        ```python
        train_part, val_part = holdout_split(create_dataset('', root, split='train', is_training=True),
                                             create_dataset('', root, split='train'), fraction=0.1, seed=42)
        ```
    """
    if len(train_set) != len(eval_set):
        raise ValueError(f'train_set ({len(train_set)}) and eval_set ({len(eval_set)}) must hold the same images.')
    train_idx, val_idx = split_indices(dataset_labels(train_set), val_fraction=fraction, seed=seed)
    return TransformSubset(train_set, train_idx.tolist()), TransformSubset(eval_set, val_idx.tolist())
