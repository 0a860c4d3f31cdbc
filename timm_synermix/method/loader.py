"""Training loader for SynerMix: timm's transforms, collate and prefetcher over a batch sampler.

timm's `create_loader` builds its own sampler; SynerMix needs the supplementing batch sampler, so
this factory assembles the same timm pieces (create_transform, fast_collate, PrefetchLoader,
worker seeding) around a `batch_sampler`.
"""
from functools import partial
from typing import Callable, Iterator, Optional, Tuple, Union

import torch
import torch.utils.data
from timm.data import create_transform
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.data.loader import PrefetchLoader, _worker_init, fast_collate

from .views import TwoViewDataset, TwoViews

__all__ = ['create_synermix_loader']


class _StackedViewsLoader:
    """Turns the prefetcher's stacked [originals; augmented] batches back into TwoViews batches."""

    def __init__(self, loader: PrefetchLoader):
        self.loader = loader

    def __iter__(self) -> Iterator[Tuple[TwoViews, torch.Tensor]]:
        for input, target in self.loader:
            half = input.shape[0] // 2
            yield TwoViews(original=input[:half], augmented=input[half:]), target[:half]

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        if name == 'loader':
            raise AttributeError(name)
        return getattr(self.loader, name)


def create_synermix_loader(
        dataset: torch.utils.data.Dataset,
        input_size: Union[int, Tuple[int, int, int]],
        batch_sampler: torch.utils.data.Sampler,
        two_views: bool = False,
        original_transform: Optional[Callable] = None,
        is_training: bool = True,
        use_prefetcher: bool = True,
        device: torch.device = torch.device('cuda'),
        num_workers: int = 1,
        pin_memory: bool = False,
        img_dtype: torch.dtype = torch.float32,
        persistent_workers: bool = True,
        worker_seeding: str = 'all',
        mean: Tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
        std: Tuple[float, ...] = IMAGENET_DEFAULT_STD,
        re_prob: float = 0.,
        re_mode: str = 'const',
        re_count: int = 1,
        re_split: bool = False,
        interpolation: str = 'bilinear',
        crop_pct: Optional[float] = None,
        crop_mode: Optional[str] = None,
        **transform_kwargs,
):
    """Build a training loader like timm's `create_loader`, driven by `batch_sampler`.

    Args:
        dataset: Map-style dataset (timm ImageDataset, torchvision dataset, ...), or a TwoViewDataset.
        input_size: (C, H, W) or size of the training crop.
        batch_sampler: Yields index lists, e.g. `SupplementedBatchSampler`.
        two_views: Yield `TwoViews(original, augmented)` batches for the intra term.
        original_transform: Original-view transform; defaults to timm's eval transform for the
            same input size, interpolation, crop_pct, mean and std.
        is_training, use_prefetcher, device, num_workers, pin_memory, img_dtype, persistent_workers,
        worker_seeding, mean, std, re_prob, re_mode, re_count, re_split, interpolation, crop_pct,
        crop_mode, **transform_kwargs: as in `timm.data.create_loader`. With two views, random
        erasing applies to the augmented view only (re_split is not combinable with it).

    Returns:
        An iterable of (input, target); with `use_prefetcher` the tensors are on `device` and normalized.
    """
    if two_views and re_split:
        raise ValueError('re_split cannot be combined with two views: the originals are the clean split.')
    transform = create_transform(
        input_size, is_training=is_training, use_prefetcher=use_prefetcher, mean=mean, std=std,
        re_prob=re_prob, re_mode=re_mode, re_count=re_count, re_num_splits=2 if re_split else 0,
        interpolation=interpolation, crop_pct=crop_pct, crop_mode=crop_mode, **transform_kwargs)
    if two_views:
        if original_transform is None and isinstance(dataset, TwoViewDataset):
            original_transform = dataset.original_transform
        if original_transform is None:
            # 'random' is a training-only interpolation; the eval transform needs a fixed one.
            original_transform = create_transform(
                input_size, is_training=False, use_prefetcher=use_prefetcher, mean=mean, std=std,
                interpolation='bilinear' if interpolation == 'random' else interpolation,
                crop_pct=crop_pct, crop_mode=crop_mode)
        if not isinstance(dataset, TwoViewDataset):
            dataset = TwoViewDataset(dataset)
        dataset.original_transform = original_transform
    dataset.transform = transform

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        collate_fn=fast_collate if use_prefetcher else torch.utils.data.default_collate,
        pin_memory=pin_memory,
        worker_init_fn=partial(_worker_init, worker_seeding=worker_seeding),
        persistent_workers=persistent_workers and num_workers > 0,
    )
    if not use_prefetcher:
        return loader
    channels = input_size[0] if isinstance(input_size, (tuple, list)) and len(input_size) == 3 else len(mean)
    # Under the prefetcher, random erasing runs on the device; with two views the stacked batch is
    # [originals; augmented] and re_num_splits=2 makes timm skip the first (original) half.
    loader = PrefetchLoader(
        loader, mean=mean, std=std, channels=channels, device=device, img_dtype=img_dtype,
        re_prob=re_prob if is_training else 0., re_mode=re_mode, re_count=re_count,
        re_num_splits=2 if (two_views or re_split) else 0)
    return _StackedViewsLoader(loader) if two_views else loader
