"""Two views of one decoded image: augmented for L_inter, original for L_intra (docs/method.md §3)."""
from typing import Any, Callable, NamedTuple, Optional, Tuple

import torch
from torch.utils.data import Dataset

__all__ = ['TwoViews', 'TwoViewDataset', 'AugMixSplits', 'create_original_transform']


class TwoViews(NamedTuple):
    """A sample's (or batch's) unaugmented original and augmented view.

    The original comes first: timm's prefetcher skips the first split of a stacked batch when it
    applies random erasing with two splits, which keeps the originals unerased. `create_synermix_loader`
    sets that up; with timm's own `create_loader`, random erasing and the prefetcher, pass `re_split=True`.
    """
    original: Any
    augmented: Any

    def to(self, *args, **kwargs) -> 'TwoViews':
        """Both views through `Tensor.to` (device, dtype, non_blocking), as one batch tensor would go."""
        return TwoViews(*(view.to(*args, **kwargs) for view in self))

    def contiguous(self, **kwargs) -> 'TwoViews':
        """Both views through `Tensor.contiguous` (e.g. memory_format=torch.channels_last)."""
        return TwoViews(*(view.contiguous(**kwargs) for view in self))

    def float(self):
        """The augmented view as float: the images of a training batch one would look at."""
        return self.augmented.float()

    @property
    def shape(self) -> torch.Size:
        """The augmented view's shape: its rows are the step's batch (AugMix splits included)."""
        return self.augmented.shape


class TwoViewDataset(Dataset):
    """Wraps an image dataset so each item yields both views of one decode (docs/method.md §3).

    The wrapped dataset must return the decoded image (its own transform is cleared). The
    augmented view uses `transform`, which timm's `create_loader` assigns like on any dataset;
    the original view uses `original_transform`, the model's evaluation transform
    (resize + center crop + normalize; without normalize under timm's prefetcher).

    Args:
        dataset: Map-style dataset returning (image, target), e.g. timm's ImageDataset.
        transform: Augmented-view (training) transform.
        original_transform: Original-view (evaluation) transform; see `create_original_transform`.

    Example:
        ```python
        train_set = TwoViewDataset(create_dataset('', root=data_dir, split='train'),
                                   transform=train_tf, original_transform=eval_tf)
        (views, target) = train_set[0]     # views.original, views.augmented
        ```
    """

    def __init__(
            self,
            dataset: Dataset,
            transform: Optional[Callable] = None,
            original_transform: Optional[Callable] = None,
    ):
        self.dataset = dataset
        if hasattr(dataset, 'transform'):
            dataset.transform = None
        self.transform = transform
        self.original_transform = original_transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tuple[TwoViews, Any]:
        image, target = self.dataset[index]
        original = self.original_transform(image) if self.original_transform is not None else image
        augmented = self.transform(image) if self.transform is not None else image
        return TwoViews(original, augmented), target

    def __getattr__(self, name: str):
        # Readers, class maps and filenames stay reachable as on the wrapped timm dataset.
        # Dunders stay unforwarded: torch's fetcher would otherwise find the wrapped dataset's
        # `__getitems__` (e.g. Subset's) and batch-fetch past both views.
        if name == 'dataset' or name.startswith('__'):
            raise AttributeError(name)
        return getattr(self.dataset, name)


class AugMixSplits:
    """The augmented view as AugMix splits, per image, as timm's `AugMixDataset` makes them.

    From timm's separated training transform (base, augmentation, final): a clean split `final(base(x))`
    followed by `num_splits - 1` splits `final(augmentation(base(x)))`. As a `TwoViewDataset`'s
    `transform` it leaves the original view untouched.

    Args:
        transforms: The (base, augmentation, final) tuple of `create_transform(..., separate=True)`.
        num_splits: Splits per image, at least 2.

    Example:
        ```python
        tf = create_transform(32, is_training=True, auto_augment='augmix-m5-w4-d2', separate=True)
        train_set = TwoViewDataset(dataset, transform=AugMixSplits(tf, 3), original_transform=eval_tf)
        views, target = train_set[0]     # views.augmented: a tuple of 3 tensors
        ```
    """

    def __init__(self, transforms: Tuple[Callable, Callable, Callable], num_splits: int):
        if num_splits < 2:
            raise ValueError(f'num_splits={num_splits}: AugMix needs at least 2 splits.')
        self.base, self.augmentation, self.final = transforms
        self.num_splits = num_splits

    def __call__(self, image) -> Tuple[Any, ...]:
        image = self.base(image)
        return (self.final(image),) + tuple(self.final(self.augmentation(image)) for _ in range(self.num_splits - 1))


def create_original_transform(data_config: dict, use_prefetcher: bool = False) -> Callable:
    """The original view's transform: timm's evaluation transform for the model's data config."""
    from timm.data import create_transform
    return create_transform(**data_config, is_training=False, use_prefetcher=use_prefetcher)
