"""Supplementation (docs/method.md §2, paper §3.1.1): batch samplers in which every class has two images.

Every class present in an emitted mini-batch gets at least two images, so the intra-class
synthesis (Eq. 1) always has something to mix. `SupplementedBatchSampler` is the paper's
scheme (a batch of N grows by one image per class seen once, to N̂ ≤ 2N; with `fixed_size`
every batch has exactly N̂ images); `PairedBatchSampler` keeps the batch at N: N/2 pairs of two
distinct images of one class (with `distinct_classes`, N/2 different classes). Supplements are drawn uniformly from the class's other training images in
O(1) from per-class index tables built once.
"""
import math
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.distributed as dist

__all__ = ['SupplementedBatchSampler', 'PairedBatchSampler', 'dataset_labels']


def dataset_labels(dataset) -> np.ndarray:
    """Labels of a dataset, read without decoding any image.

    Understands timm's ImageDataset (reader.samples / reader.targets / reader.iter_targets), torchvision datasets
    (`.targets`, `.labels`, `._labels`, `.samples`), `torch.utils.data.Subset`, wrappers that
    expose `.dataset` (TwoViewDataset), and a plain sequence of ints.
    """
    if isinstance(dataset, np.ndarray) or isinstance(dataset, torch.Tensor):
        return np.asarray(dataset, dtype=np.int64).reshape(-1)
    if isinstance(dataset, (list, tuple)) and (len(dataset) == 0 or np.isscalar(dataset[0])):
        return np.asarray(dataset, dtype=np.int64)
    if isinstance(dataset, torch.utils.data.Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices)]
    reader = getattr(dataset, 'reader', None)
    for source in (reader, dataset):
        if source is None:
            continue
        for name in ('targets', 'labels', '_labels'):
            values = getattr(source, name, None)
            if values is not None and not callable(values):
                return np.asarray(values, dtype=np.int64).reshape(-1)
        samples = getattr(source, 'samples', None)
        if samples is not None and len(samples) and isinstance(samples[0], (tuple, list)):
            return np.asarray([s[1] for s in samples], dtype=np.int64)
        if callable(getattr(source, 'iter_targets', None)):  # timm's Hugging Face reader: the label column alone
            return np.fromiter(source.iter_targets(), dtype=np.int64)
    inner = getattr(dataset, 'dataset', None)
    if inner is not None:
        return dataset_labels(inner)
    raise TypeError(
        f'Cannot read labels of {type(dataset).__name__} without decoding images. '
        'Pass the labels as a list of ints, or give the dataset a `targets` attribute.')


def _check_labels(labels: np.ndarray, batch_size: int, num_classes: Optional[int]) -> None:
    if batch_size < 2:
        raise ValueError(
            f'batch_size={batch_size}: SynerMix needs at least 2 samples per batch to mix; use batch_size=2 or more.')
    if labels.size == 0:
        raise ValueError('The training set has no labels (empty dataset); check the data folder and split.')
    upper = num_classes if num_classes is not None else np.iinfo(np.int64).max
    out_of_range = (labels < 0) | (labels >= upper)
    if out_of_range.any():
        bad = np.unique(labels[out_of_range])[:10].tolist()
        raise ValueError(
            f'Labels {bad} are outside [0, {num_classes}): pass num_classes={int(labels.max()) + 1} (the '
            f'number of classes in the data) or fix the class map.')


def _world(num_replicas: Optional[int], rank: Optional[int]):
    if num_replicas is None:
        num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if not 0 <= rank < num_replicas:
        raise ValueError(f'rank={rank} is outside [0, num_replicas={num_replicas}).')
    return num_replicas, rank


class SupplementedBatchSampler(torch.utils.data.Sampler):
    """Batch sampler that gives every class in a batch at least two samples (docs/method.md §2).

    Each epoch is a seeded permutation of the training set, sharded disjointly across ranks and
    cut into batches of `batch_size`. For each class that appears exactly once in a batch, one
    more image of that class, not already in the batch, is drawn uniformly from the whole
    training set, so a batch grows from N to at most 2N. The emitted batch is shuffled: timm's
    Mixup pairs sample i with N-1-i, and supplements must not all sit at the end.

    With `fixed_size` = N̂ every batch has exactly N̂ images, so cudnn and torch.compile see one
    shape: a batch that would grow past N̂ leaves out (for this epoch) as many of its classes seen
    once as it takes to fit, and one that stays below N̂ is topped up with further images of classes
    it already holds. `suggest_fixed_size` picks an N̂ that rarely leaves anything out.

    Everything is a function of (seed, epoch, rank, batch index), so `set_epoch(epoch, start_batch)`
    resumes the exact batch sequence of an interrupted epoch.

    Args:
        labels: Class index per training sample, or a dataset (see `dataset_labels`).
        batch_size: Samples per batch before supplementation (per rank). Must be >= 2.
        drop_last: Drop the last incomplete batch of each rank's shard.
        shuffle: Shuffle the epoch (seeded); False cuts batches in dataset order (supplements and the
            order within each emitted batch stay random).
        seed: Base seed, shared by all ranks.
        num_replicas: Number of ranks; defaults to the torch.distributed world size.
        rank: This rank; defaults to the torch.distributed rank.
        supplement: False emits plain batches (presets without an intra term), same sharding.
        allow_singleton_classes: Let classes with a single training image pass with one sample
            (its synthesized feature is then the sample itself) instead of raising.
        num_classes: When given, labels outside [0, num_classes) raise.
        class_names: Optional names used in error messages.
        fixed_size: N̂, the size of every emitted batch (>= batch_size; needs drop_last), or None.
        permutation: 'seeded' (the epoch's permutation from (seed, epoch)); 'torch': drawn from torch's global
            RNG as torch's RandomSampler does (so plain batches come in timm's own training order; one
            process, supplement=False; its seed is kept in `state_dict()` for a mid-epoch resume); or
            'distributed': torch's DistributedSampler order (seed 0 + epoch, padded, timm's order under torchrun;
            supplement=False).
        num_repeats: Repeated augmentation (timm's `RepeatAugSampler`, DeiT): each image of the epoch's permutation
            appears this many times in a row before sharding, and the epoch keeps its length, so it sees
            1/num_repeats of the images, each num_repeats times (on different ranks when there are several).
            Copies of one image count as one image for supplementation. 0 or 1: off; a fraction (e.g. 2.5) repeats
            some images one time fewer.
        supplement_every: Supplement only every k-th batch of the run (global index epoch * len + b), plain
            batches between: with `SynerMixTask(intra_every=k)` the intra term then gets its supplemented batch
            and the steps without it cost a plain step (docs/method.md §5).

    Example:
        ```python
        sampler = SupplementedBatchSampler(dataset_labels(train_set), batch_size=32, seed=0)
        loader = DataLoader(train_set, batch_sampler=sampler)
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            for images, target in loader: ...
        ```
    """

    def __init__(
            self,
            labels: Union[Sequence[int], np.ndarray, torch.utils.data.Dataset],
            batch_size: int,
            drop_last: bool = True,
            shuffle: bool = True,
            seed: int = 0,
            num_replicas: Optional[int] = None,
            rank: Optional[int] = None,
            supplement: bool = True,
            allow_singleton_classes: bool = False,
            num_classes: Optional[int] = None,
            class_names: Optional[Sequence[str]] = None,
            fixed_size: Optional[int] = None,
            permutation: str = 'seeded',
            num_repeats: float = 0,
            supplement_every: int = 1,
    ):
        labels = dataset_labels(labels)
        _check_labels(labels, batch_size, num_classes)
        if permutation not in ('seeded', 'torch', 'distributed') or (permutation != 'seeded' and supplement) or \
                (permutation == 'torch' and num_replicas not in (None, 1)):
            raise ValueError(f'permutation="{permutation}": use "seeded", "torch" (supplement=False, one process) or '
                             '"distributed" (supplement=False).')
        if num_repeats < 0 or (num_repeats > 1 and (permutation != 'seeded' or fixed_size is not None)):
            raise ValueError(f'num_repeats={num_repeats:g}: use 0 (off) or above 1, without fixed_size and with '
                             'permutation="seeded".')
        if supplement_every < 1 or (supplement_every > 1 and (fixed_size is not None or not supplement)):
            raise ValueError(f'supplement_every={supplement_every}: use 1, or k > 1 with supplement=True and no '
                             'fixed_size.')
        if fixed_size is not None and (fixed_size < batch_size or not drop_last or not supplement):
            raise ValueError(f'fixed_size={fixed_size} needs fixed_size >= batch_size={batch_size}, drop_last=True '
                             'and supplement=True.')
        self.labels = labels
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.supplement = supplement
        self.fixed_size = fixed_size
        self.permutation = permutation
        self.num_repeats = float(num_repeats)
        self.supplement_every = int(supplement_every)
        self.torch_seed: Optional[int] = None
        self.epoch = 0
        self.start_batch = 0

        # Per-class tables: members of class c are order[starts[c]:starts[c] + counts[c]],
        # and sample i sits at offset position_in_class[i] of that slice.
        self.order = np.argsort(labels, kind='stable')
        self.counts = np.bincount(labels)
        self.starts = np.concatenate(([0], np.cumsum(self.counts)[:-1]))
        self.position_in_class = np.empty_like(self.order)
        self.position_in_class[self.order] = np.arange(labels.size) - self.starts[labels[self.order]]

        singletons = np.flatnonzero(self.counts == 1)
        if supplement and singletons.size and not allow_singleton_classes:
            names = [class_names[c] if class_names is not None else str(c) for c in singletons[:20]]
            more = f' (and {singletons.size - 20} more)' if singletons.size > 20 else ''
            raise ValueError(
                f'Classes with a single training image cannot be supplemented: {", ".join(names)}{more}. '
                'Add images to them, or pass allow_singleton_classes=True '
                'to let them train with one sample.')
        self._set_sizes()

    def _set_sizes(self) -> None:
        n = self.labels.size
        if self.drop_last and self.permutation != 'distributed':  # DistributedSampler pads its shards instead
            self.num_samples = n // self.num_replicas
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.num_batches = self.num_samples // self.batch_size if self.drop_last else \
            math.ceil(self.num_samples / self.batch_size)
        if self.num_batches == 0:
            raise ValueError(
                f'{n} training samples over {self.num_replicas} rank(s) do not fill one batch of '
                f'{self.batch_size} with drop_last=True: lower batch_size.')

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation; `start_batch` skips batches already trained (resume)."""
        if not 0 <= start_batch <= self.num_batches:
            raise ValueError(f'start_batch={start_batch} is outside [0, {self.num_batches}].')
        if int(epoch) != self.epoch or not start_batch:
            self.torch_seed = None  # a new epoch draws its own permutation
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def state_dict(self) -> Dict[str, int]:
        return {'seed': self.seed, 'epoch': self.epoch, 'start_batch': self.start_batch, 'torch_seed': self.torch_seed}

    def load_state_dict(self, state: Dict[str, int]) -> None:
        self.seed = int(state['seed'])
        self.set_epoch(state['epoch'], state.get('start_batch', 0))
        self.torch_seed = state.get('torch_seed')

    def __len__(self) -> int:
        return self.num_batches - self.start_batch

    def _shard(self) -> np.ndarray:
        n = self.labels.size
        if self.shuffle and self.permutation == 'torch':
            if self.torch_seed is None:  # drawn as torch's RandomSampler draws it, when iteration starts
                self.torch_seed = int(torch.empty((), dtype=torch.int64).random_().item())
            indices = torch.randperm(n, generator=torch.Generator().manual_seed(self.torch_seed)).numpy()
        elif self.shuffle and self.permutation == 'distributed':
            indices = torch.randperm(n, generator=torch.Generator().manual_seed(self.epoch)).numpy()
        elif self.shuffle:
            indices = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        else:
            indices = np.arange(n)
        if self.num_repeats > 1:  # a fractional count repeats some images one time fewer, as timm's sampler
            indices = indices[(np.arange(math.ceil(self.num_repeats * n)) // self.num_repeats).astype(np.int64)]
        total = self.num_samples * self.num_replicas
        if total > indices.size:
            # Pad by wrapping around so every rank gets the same count (as DistributedSampler does).
            indices = np.concatenate([indices, indices[:total - n]])
        return indices[self.rank:total:self.num_replicas]

    def _other_images(self, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """For each member, another image of its class, uniformly (itself for a single-image class)."""
        cls = self.labels[members]
        # Uniform over the class's other images: draw among count-1 slots and skip the member's own slot.
        offset = (rng.random(members.size) * (self.counts[cls] - 1)).astype(np.int64)
        offset += (offset >= self.position_in_class[members]) & (self.counts[cls] > 1)
        return self.order[self.starts[cls] + offset]

    def _lonely(self, batch: np.ndarray) -> np.ndarray:
        """Positions in `batch` of the classes it holds one distinct image of (and that have other images)."""
        distinct, position = np.unique(batch, return_index=True)
        classes, first, counts = np.unique(self.labels[distinct], return_index=True, return_counts=True)
        return np.sort(position[first[(counts == 1) & (self.counts[classes] > 1)]])

    def _supplements(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self._other_images(batch[self._lonely(batch)], rng)

    def _fit(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Primaries plus supplements, exactly `fixed_size` long."""
        lonely = self._lonely(batch)
        excess = batch.size + lonely.size - self.fixed_size
        if excess > 0:  # leave out the last classes seen once: each costs a primary and its supplement
            # The dropped positions are the last lonely ones, so the kept lonely positions do not shift.
            drop = lonely[lonely.size - (excess + 1) // 2:]
            batch, lonely = np.delete(batch, drop), lonely[:lonely.size - drop.size]
        batch = np.concatenate([batch, self._other_images(batch[lonely], rng)])
        room = self.fixed_size - batch.size
        if room > 0:  # top up with further images of classes the batch already holds
            batch = np.concatenate([batch, self._other_images(rng.choice(batch, room), rng)])
        return batch

    def simulated_sizes(self, num_batches: int = 64) -> np.ndarray:
        """Supplemented sizes of `num_batches` random batches of this data (seeded; the epoch is not touched)."""
        rng = np.random.default_rng([self.seed, 1 << 20])
        repeats = math.ceil(max(self.num_repeats, 1))
        distinct = -(-self.batch_size // repeats)
        batches = (np.repeat(rng.choice(self.labels.size, distinct, replace=False), repeats)[:self.batch_size]
                   for _ in range(num_batches))
        return np.asarray([self.batch_size + self._lonely(batch).size for batch in batches])

    def suggest_fixed_size(self, quantile: float = 0.95, multiple: int = 8, num_batches: int = 64) -> int:
        """N̂ at the `quantile` of supplemented batch sizes of this data (simulated), rounded up to `multiple`."""
        return int(math.ceil(np.quantile(self.simulated_sizes(num_batches), quantile) / multiple) * multiple)

    def __iter__(self) -> Iterator[List[int]]:
        shard = self._shard()
        for b in range(self.start_batch, self.num_batches):
            batch = shard[b * self.batch_size:(b + 1) * self.batch_size]
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, b])
            if self.fixed_size is not None:
                batch = self._fit(batch, rng)
            elif self.supplement and (self.epoch * self.num_batches + b) % self.supplement_every == 0:
                batch = np.concatenate([batch, self._supplements(batch, rng)])
            elif self.permutation != 'seeded':
                yield batch.tolist()  # in the permutation's order, as torch's BatchSampler cuts it
                continue
            yield batch[rng.permutation(batch.size)].tolist()


class PairedBatchSampler(SupplementedBatchSampler):
    """Batches of `batch_size` = N that hold N/2 pairs: two distinct images of one class each (docs/method.md §2).

    The user's batch size stays the batch the model sees, so SynerMix costs one extra forward and
    backward of N over a plain run. Against the paper, a batch holds N/2 class pairs instead of ~N
    classes with supplements. Every training image appears once per epoch, as in a plain epoch; a
    class with an odd count borrows one more of its own images, drawn uniformly. The pairs are shuffled
    over the epoch (a class can hold several pairs of a batch) and sharded across ranks, which all
    yield the same number of batches. Everything is a function of (seed, epoch, rank, batch index);
    `set_epoch(epoch, start_batch)` resumes mid-epoch.

    With `distinct_classes=True` a batch holds N/2 different classes and no image twice, closer to the class
    diversity of the paper's supplemented batches: each rank's pairs of the epoch (a random subset when they do
    not divide into whole batches) are ordered by class, in a random class order, pair i goes to batch
    i mod (batches per rank), so a class's pairs land in different batches, and the batches are shuffled.

    Args:
        labels, drop_last, shuffle, seed, num_replicas, rank, allow_singleton_classes, num_classes,
        class_names: as `SupplementedBatchSampler` (a single-image class pairs with itself when allowed).
        batch_size: Images per batch, even.
        distinct_classes: N/2 different classes per batch (needs N/2 classes, and no class with more pairs than a
            rank has batches).

    Example:
        ```python
        sampler = PairedBatchSampler(dataset_labels(train_set), batch_size=32, seed=0)
        sampler.set_epoch(0)
        batch = next(iter(sampler))   # 32 indices: 16 classes x 2 images (or fewer classes, more pairs)
        ```
    """

    def __init__(self, labels, batch_size: int, distinct_classes: bool = False, **kwargs):
        self.distinct_classes = distinct_classes
        if batch_size % 2:
            raise ValueError(f'batch_size={batch_size}: paired batches hold pairs of one class; use an even '
                             f'batch_size, e.g. {batch_size + 1}.')
        num_repeats = kwargs.pop('num_repeats', 0)
        if num_repeats > 1:
            raise ValueError(f'num_repeats={num_repeats:g} with paired batches: a pair is two distinct images of one '
                             'class, which repeats would break; use supplemented batches.')
        for name in ('supplement', 'fixed_size', 'supplement_every'):
            if kwargs.pop(name, None) not in (None, True):
                raise ValueError(f'{name} has no meaning for paired batches.')
        super().__init__(labels, batch_size, **kwargs)

    def _set_sizes(self) -> None:
        self.num_pairs = int(np.sum((self.counts + 1) // 2))
        pairs_per_batch = self.batch_size // 2
        if self.drop_last:
            self.pairs_per_rank = self.num_pairs // self.num_replicas
            self.num_batches = self.pairs_per_rank // pairs_per_batch
        else:
            self.pairs_per_rank = math.ceil(self.num_pairs / self.num_replicas)
            self.num_batches = math.ceil(self.pairs_per_rank / pairs_per_batch)
        self.num_samples = self.num_batches * self.batch_size
        if self.num_batches == 0:
            raise ValueError(
                f'{self.num_pairs} pairs over {self.num_replicas} rank(s) do not fill one batch of '
                f'{self.batch_size} with drop_last=True: lower batch_size.')
        if self.distinct_classes:
            self._check_distinct(pairs_per_batch)

    def _check_distinct(self, pairs_per_batch: int) -> None:
        """Each batch holds batch_size/2 classes, and a class's pairs go to distinct batches of the epoch."""
        most = int(((self.counts + 1) // 2).max())
        classes = int(np.count_nonzero(self.counts))
        if pairs_per_batch <= classes and most <= self.num_batches:
            return
        # the largest batch_size that fits both: its batches are at most pairs_per_rank // most
        limit = 2 * min(classes, self.pairs_per_rank // most)
        batches = f'{self.num_batches} batch{"es" * (self.num_batches != 1)}'
        why = (f'a batch holds {pairs_per_batch} different classes, one per pair, and the data has {classes}'
               if pairs_per_batch > classes else
               f'the largest class has {most} pairs, each in a batch of its own, and an epoch has {batches} per rank')
        fix = f'use batch_size={limit} or less, or distinct_classes=False' if limit >= 2 else \
            'use distinct_classes=False'
        raise ValueError(f'distinct_classes=True with batch_size={self.batch_size}: {why}; {fix} (pairs of one '
                         f'class may then share a batch).')

    def _pairs(self) -> np.ndarray:
        """The epoch's pairs [P, 2]: each class's images in a seeded random order, paired consecutively."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n = self.labels.size
        within = np.lexsort((rng.random(n) if self.shuffle else np.arange(n), self.labels))
        position = np.arange(n) - self.starts[self.labels[within]]
        odd = np.flatnonzero(self.counts % 2)
        leftover = within[self.starts[odd] + self.counts[odd] - 1]   # an odd class's last image in this order
        borrowed = self._other_images(leftover, rng)
        members = np.concatenate([within, borrowed])
        classes = np.concatenate([self.labels[within], odd])
        slots = np.concatenate([position, self.counts[odd]])
        pairs = members[np.lexsort((slots, classes))].reshape(-1, 2)
        return pairs[rng.permutation(len(pairs))] if self.shuffle else pairs

    def _spread_classes(self, pairs: np.ndarray, per_batch: int) -> np.ndarray:
        """This rank's pairs reordered so batch b (pairs [b*per_batch, (b+1)*per_batch)) holds distinct classes."""
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, 1 << 20])
        used = self.num_batches * per_batch
        pairs = pairs[np.sort(rng.permutation(len(pairs))[:used])]
        class_key = rng.permutation(self.counts.size)[self.labels[pairs[:, 0]]]
        by_class = pairs[np.lexsort((rng.random(used), class_key))]
        # Sorted position i goes to batch i mod M, slot i div M: a class's k <= M consecutive pairs get k batches.
        slot = np.arange(used)
        order = np.empty(used, dtype=np.int64)
        order[(slot % self.num_batches) * per_batch + slot // self.num_batches] = slot
        # Batches b and b+1 hold the same classes (a class's consecutive pairs): shuffle the batches, or SGD would
        # see one set of classes several steps in a row.
        spread = by_class[order].reshape(self.num_batches, per_batch, 2)
        return spread[rng.permutation(self.num_batches)].reshape(-1, 2)

    def __iter__(self) -> Iterator[List[int]]:
        pairs = self._pairs()
        total = self.pairs_per_rank * self.num_replicas
        if total > len(pairs):
            pairs = np.concatenate([pairs, pairs[:total - len(pairs)]])
        pairs = pairs[self.rank:total:self.num_replicas]
        per_batch = self.batch_size // 2
        if self.distinct_classes:
            pairs = self._spread_classes(pairs, per_batch)
        for b in range(self.start_batch, self.num_batches):
            batch = pairs[b * per_batch:(b + 1) * per_batch].reshape(-1)
            rng = np.random.default_rng([self.seed, self.epoch, self.rank, b])
            yield batch[rng.permutation(batch.size)].tolist()
