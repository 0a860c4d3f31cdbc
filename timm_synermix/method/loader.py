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
from timm.data.random_erasing import RandomErasing

from .views import AugMixSplits, TwoViewDataset, TwoViews

__all__ = ['create_synermix_loader']


def _fast_collate_views(batch):
    """fast_collate of (TwoViews(original, (split, ...)), target) samples: [originals; split 0; split 1; ...]."""
    return fast_collate([((views.original, *views.augmented), target) for views, target in batch])


def _collate_splits(batch):
    """default_collate with AugMix splits stacked split-major, as timm's fast_collate stacks them."""
    if isinstance(batch[0][0], TwoViews):
        views, target = torch.utils.data.default_collate(batch)
        return TwoViews(views.original, torch.cat(list(views.augmented))), target
    splits, target = torch.utils.data.default_collate(batch)
    return torch.cat(list(splits)), target.repeat(len(splits))


def _two_view_dataset(dataset, original_transform: Optional[Callable], interpolation: str, **eval_kwargs):
    """`dataset` as a TwoViewDataset whose originals get `original_transform`, else the one it has, else timm's
    eval transform."""
    if original_transform is None and isinstance(dataset, TwoViewDataset):
        original_transform = dataset.original_transform
    if original_transform is None:
        # 'random' is a training-only interpolation; the eval transform needs a fixed one.
        original_transform = create_transform(
            is_training=False, interpolation='bilinear' if interpolation == 'random' else interpolation, **eval_kwargs)
    if not isinstance(dataset, TwoViewDataset):
        dataset = TwoViewDataset(dataset)
    dataset.original_transform = original_transform
    return dataset


def _collate(use_prefetcher: bool, splits: int, two_views: bool) -> Callable:
    """timm's collate for the loader's items: AugMix splits stacked split-major, after the originals."""
    if splits and not use_prefetcher:
        return _collate_splits
    if splits and two_views:
        return _fast_collate_views
    return fast_collate if use_prefetcher else torch.utils.data.default_collate


class _StackedViewsLoader:
    """Turns the prefetcher's stacked [originals; augmented (splits)] batches back into TwoViews batches, random
    erasing the augmented view only (timm's `RandomErasing`; with `num_splits` it spares the clean AugMix split)."""

    def __init__(self, loader: PrefetchLoader, num_views: int = 2, random_erasing: Optional[Callable] = None):
        self.loader = loader
        self.num_views = num_views
        self.random_erasing = random_erasing

    def __iter__(self) -> Iterator[Tuple[TwoViews, torch.Tensor]]:
        for input, target in self.loader:
            n = input.shape[0] // self.num_views
            augmented = input[n:]
            if self.random_erasing is not None:
                augmented = self.random_erasing(augmented)
            yield TwoViews(original=input[:n], augmented=augmented), target[:n]

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        if name == 'loader':
            raise AttributeError(name)
        return getattr(self.loader, name)


def _check_re_split(two_views: bool, re_split: bool, num_aug_splits: int) -> None:
    if two_views and re_split and num_aug_splits < 2:
        raise ValueError(f're_split=True with num_aug_splits={num_aug_splits}: it spares a clean first split from '
                         'random erasing, and with two views the originals are that clean view already; drop it '
                         '(it applies to AugMix splits).')


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
        num_aug_splits: int = 0,
        collate_fn: Optional[Callable] = None,
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
        crop_mode, num_aug_splits, collate_fn, **transform_kwargs: as in `timm.data.create_loader`. With two views,
        random erasing applies to the augmented view only, AugMix splits (`num_aug_splits`) make up the
        augmented view, and `re_split` needs them: it spares their clean split.

    Returns:
        An iterable of (input, target); with `use_prefetcher` the tensors are on `device` and normalized.
    """
    _check_re_split(two_views, re_split, num_aug_splits)
    splits = num_aug_splits if num_aug_splits > 1 else 0
    re_num_splits = (splits or 2) if re_split else 0
    transform = create_transform(
        input_size, is_training=is_training, use_prefetcher=use_prefetcher, mean=mean, std=std,
        re_prob=re_prob, re_mode=re_mode, re_count=re_count, re_num_splits=re_num_splits,
        interpolation=interpolation, crop_pct=crop_pct, crop_mode=crop_mode, separate=splits > 0,
        **transform_kwargs)
    if splits and two_views:
        transform = AugMixSplits(transform, splits)
    elif splits:
        from timm.data import AugMixDataset
        dataset = AugMixDataset(dataset, num_splits=splits)
    if two_views:
        dataset = _two_view_dataset(dataset, original_transform, input_size=input_size, use_prefetcher=use_prefetcher,
                                    mean=mean, std=std, interpolation=interpolation, crop_pct=crop_pct,
                                    crop_mode=crop_mode)
    dataset.transform = transform

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        collate_fn=collate_fn or _collate(use_prefetcher, splits, two_views),
        pin_memory=pin_memory,
        worker_init_fn=partial(_worker_init, worker_seeding=worker_seeding),
        persistent_workers=persistent_workers and num_workers > 0,
    )
    if not use_prefetcher:
        return loader
    channels = input_size[0] if isinstance(input_size, (tuple, list)) and len(input_size) == 3 else len(mean)
    erasing = dict(re_prob=re_prob if is_training else 0., re_mode=re_mode, re_count=re_count,
                   re_num_splits=re_num_splits)
    return _prefetch(loader, two_views, splits, erasing, mean=mean, std=std, channels=channels, device=device,
                     img_dtype=img_dtype)


def _prefetch(loader, two_views: bool, splits: int, erasing: dict, **prefetch_kwargs):
    """timm's PrefetchLoader around `loader`; with two views, the views loader that splits the stacked batch."""
    # Under the prefetcher, random erasing runs on the device: timm's prefetcher erases the whole stacked batch,
    # so with two views it is left to the views loader, which erases the augmented view alone.
    loader = PrefetchLoader(loader, **prefetch_kwargs, **dict(erasing, re_prob=0. if two_views else erasing['re_prob']))
    if not two_views:
        return loader
    re_prob = erasing['re_prob']
    random_erasing = RandomErasing(re_prob, mode=erasing['re_mode'], max_count=erasing['re_count'],
                                   num_splits=erasing['re_num_splits'], device=prefetch_kwargs['device']) \
        if re_prob > 0 else None
    return _StackedViewsLoader(loader, 1 + max(splits, 1), random_erasing)
