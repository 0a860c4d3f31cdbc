"""train.py's data loaders: the SynerMix training loader around the batch sampler, timm's eval loader, and the
loader workers' RNG streams, which a resume continues."""
import logging
import random

import numpy as np
import torch

from ..method.loader import create_synermix_loader
from ..method.sampler import PairedBatchSampler, SupplementedBatchSampler
from ..method.views import create_original_transform
from .data import input_channels
from .errors import InputError, to_flags

__all__ = ['LoaderEpochs', 'WorkerRng', 'TrainBatchSampler', 'PairedTrainBatchSampler', 'mixes_in_loader',
           'collate_mixup', 'create_train_sampler', 'channel_data_config', 'create_train_loader',
           'reference_batch_size', 'create_eval_loader', 'continue_eval_workers']

_logger = logging.getLogger('train')


class LoaderEpochs:
    """The batch sampler's stand-in where timm's own loader batches: a streaming dataset (hfids/, wds/, tfds/) or
    scheduled resolutions (--train-img-sizes), for runs without SynerMix.

    Each epoch is set as timm's train.py sets it (the dataset's, else the batch sampler's, else the sampler's
    `set_epoch`); `num_batches` is the loader's length. These loaders cannot skip to a batch, so a run resumes
    from epoch checkpoints only.
    """

    def __init__(self, dataset):
        self.dataset, self.loader, self.epoch, self.num_batches = dataset, None, 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = int(epoch)
        if hasattr(self.dataset, 'set_epoch'):
            self.dataset.set_epoch(self.epoch)
        for sampler in (getattr(self.loader, 'batch_sampler', None), getattr(self.loader, 'sampler', None)):
            if hasattr(sampler, 'set_epoch'):
                sampler.set_epoch(self.epoch)
                break

    def state_dict(self):
        return {'epoch': self.epoch}

    def load_state_dict(self, state) -> None:
        self.set_epoch(state['epoch'])


# The three RNG states a loader worker draws augmentations from: Python's Mersenne Twister (its words and position),
# numpy's legacy one (its words) and torch's CPU generator (its bytes).
_PY_WORDS = len(random.getstate()[1])
_NP_WORDS = np.random.get_state()[1].size
_TORCH_BYTES = torch.get_rng_state().numel()
_TORCH_WORDS = -(-_TORCH_BYTES // 8)
# A worker's slot, int64: [written, Python's words, Python's gauss set, numpy's position, numpy's gauss set],
# [Python's gauss, numpy's cached gaussian] as float64 bits, numpy's words, torch's bytes.
_HEAD = 1 + _PY_WORDS + 3
_SLOT = _HEAD + 2 + _NP_WORDS + _TORCH_WORDS


def _capture_rng() -> torch.Tensor:
    _, words, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    torch_bytes = torch.zeros(_TORCH_WORDS * 8, dtype=torch.uint8)
    torch_bytes[:_TORCH_BYTES] = torch.get_rng_state()
    return torch.cat([torch.tensor([1, *words, gauss is not None, pos, has_gauss], dtype=torch.int64),
                      torch.tensor([gauss or 0., cached], dtype=torch.float64).view(torch.int64),
                      torch.from_numpy(keys.astype(np.int64)), torch_bytes.view(torch.int64)])


def _restore_rng(slot: torch.Tensor) -> None:
    head = slot[:_HEAD].tolist()
    has_py_gauss, pos, has_gauss = head[1 + _PY_WORDS:]
    gauss, cached = slot[_HEAD:_HEAD + 2].view(torch.float64).tolist()
    random.setstate((random.getstate()[0], tuple(head[1:1 + _PY_WORDS]), gauss if has_py_gauss else None))
    keys = slot[_HEAD + 2:_HEAD + 2 + _NP_WORDS].numpy().astype(np.uint32)
    np.random.set_state(('MT19937', keys, pos, has_gauss, cached))
    torch.set_rng_state(slot[_HEAD + 2 + _NP_WORDS:].contiguous().view(torch.uint8)[:_TORCH_BYTES].clone())


class _RecordingCollate:
    """The loader's collate function; then, the batch complete, the worker writes its RNG states into its slot."""

    def __init__(self, collate_fn, slots: torch.Tensor):
        self.collate_fn, self.slots = collate_fn, slots

    def __call__(self, batch):
        batch = self.collate_fn(batch)
        self.slots[torch.utils.data.get_worker_info().id] = _capture_rng()
        return batch


class WorkerRng:
    """The training loader workers' RNG streams, kept in the checkpoint so that a resume continues them.

    As in timm, the workers persist across epochs: each seeds its Python, numpy and torch RNGs once, and the
    augmentations of an epoch continue the draws of the one before. After each batch a worker writes its three
    states into a slot in shared memory; at an epoch's end the slots hold where every stream stands, and the
    sampler's checkpoint state holds the slots (`TrainBatchSampler`). A resumed run's workers start from them,
    on one process and with the same -j (another -j: they start afresh, with a warning).

    Args:
        num_workers: The loader's workers (-j).
        worker_seeding: timm's worker seeding ('all', 'part' or a callable), applied before a restore.
        restorable: Whether this process may take the saved streams: under torchrun only rank 0's are saved.
    """

    def __init__(self, num_workers: int, worker_seeding='all', restorable: bool = True):
        self.worker_seeding, self.restorable = worker_seeding, restorable
        self.slots = torch.zeros(num_workers, _SLOT, dtype=torch.int64).share_memory_()
        self.restore = False

    def attach(self, data_loader: torch.utils.data.DataLoader) -> None:
        """Record the streams after each batch, restore them as each worker starts."""
        data_loader.collate_fn = _RecordingCollate(data_loader.collate_fn, self.slots)
        data_loader.worker_init_fn = self.init_worker

    def init_worker(self, worker_id: int) -> None:
        from timm.data.loader import _worker_init
        _worker_init(worker_id, worker_seeding=self.worker_seeding)
        if self.restore and self.slots[worker_id, 0]:
            _restore_rng(self.slots[worker_id])

    def state_dict(self):
        return {'slots': self.slots.clone()}

    def load_state_dict(self, state) -> None:
        slots = (state or {}).get('slots')
        if slots is None or not self.restorable:
            return
        if slots.shape != self.slots.shape:
            _logger.warning(f'The loader workers\' RNG streams are not restored: the checkpoint was written with -j '
                            f'{slots.shape[0]}, this run has -j {self.slots.shape[0]}; the augmentations from here '
                            f'differ from an uninterrupted run\'s.')
            return
        self.slots.copy_(slots)
        self.restore = True


class _CarriesWorkerRng:
    """The training batch sampler's checkpoint state plus the loader workers' RNG streams (`WorkerRng`): an epoch
    checkpoint continues both, the batch order and the augmentations."""
    worker_rng: WorkerRng

    def state_dict(self):
        return {**super().state_dict(), 'worker_rng': self.worker_rng.state_dict()}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.worker_rng.load_state_dict(state.get('worker_rng'))


class TrainBatchSampler(_CarriesWorkerRng, SupplementedBatchSampler):
    """`SupplementedBatchSampler` whose checkpoint state holds the loader workers' RNG streams."""


class PairedTrainBatchSampler(_CarriesWorkerRng, PairedBatchSampler):
    """`PairedBatchSampler` whose checkpoint state holds the loader workers' RNG streams."""


def _resumed_workers(args) -> bool:
    """Whether this process resumes loader workers that the interrupted run had started: their seed was drawn from
    the global RNG then, and drawing it again would shift the global RNG (and the next epoch's batch order) against
    an uninterrupted run. Under torchrun the streams are not restored, and each rank draws its own as before."""
    return bool(args.resume) and args.workers > 0 and args.world_size == 1


def create_train_sampler(args, labels, class_names, dataset=None):
    """The training batches of --batch-composition, with or without the intra term: plain, supplemented,
    fixed-size, paired or paired with distinct classes. A streaming dataset (no labels up front) batches itself:
    plain runs only."""
    if labels is None or args.train_img_sizes:  # the flags these cannot serve were refused by check_args
        return LoaderEpochs(dataset)
    composition = args.synermix_batches
    kwargs = dict(batch_size=args.batch_size, drop_last=True, shuffle=True, seed=args.seed,
                  allow_singleton_classes=args.allow_singleton_classes, num_classes=args.num_classes,
                  class_names=class_names, num_repeats=args.aug_repeats)
    try:
        if composition in ('paired', 'paired-distinct'):
            sampler = PairedTrainBatchSampler(labels, distinct_classes=composition == 'paired-distinct', **kwargs)
        else:
            # Plain batches on one process come in timm's own training order (torch's RandomSampler).
            timm_order = args.batch_order == 'timm' and composition == 'plain' and not args.aug_repeats
            permutation = ('distributed' if args.distributed else 'torch') if timm_order else 'seeded'
            # With the intra term every K-th step, the steps between get plain batches (the task's step count and
            # the sampler's global batch index advance together, one per training forward).
            every = args.synermix_every if args.synermix and composition == 'supplemented' else 1
            sampler = TrainBatchSampler(labels, supplement=composition != 'plain', permutation=permutation,
                                        supplement_every=every, **kwargs)
            if composition == 'fixed':
                size = args.synermix_fixed_size or sampler.suggest_fixed_size()
                sampler = TrainBatchSampler(labels, supplement=True, fixed_size=size, **kwargs)
    except ValueError as e:
        raise InputError(to_flags(str(e)))
    sampler.worker_rng = WorkerRng(args.workers, args.worker_seeding, restorable=args.world_size == 1)
    return sampler


def mixes_in_loader(args) -> bool:
    """Whether timm's train.py would mix in the loader here: MixUp/CutMix under the prefetcher (an even batch).
    Without the intra term the run then mixes exactly as timm does; SynerMix mixes in the task (originals unmixed)."""
    return args.inter_kind == 'mixup' and args.prefetcher and not args.synermix and args.batch_size % 2 == 0 \
        and args.synermix_batches == 'plain'


def collate_mixup(args):
    """timm's FastCollateMixup where `mixes_in_loader`, else None (the task or the loop mixes)."""
    if not mixes_in_loader(args):
        return None
    from timm.data import FastCollateMixup
    return FastCollateMixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                            prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                            label_smoothing=args.smoothing, num_classes=args.num_classes)


def _scheduled_sizes(args):
    """timm's scheduled-resolution loader arguments (--train-img-sizes and its companions), or none."""
    if not args.train_img_sizes:
        return {}
    return dict(input_size_choices=args.train_img_sizes, batch_size_choices=args.train_batch_sizes,
                batch_choice_weights=args.train_size_probs, batch_choice_seed=args.seed,
                batch_choice_schedule=args.train_size_schedule,
                batch_schedule_epochs=args.epochs if args.train_size_schedule == 'progressive' else None,
                batch_schedule_spread=args.train_size_schedule_spread,
                batch_schedule_random_mix=args.train_size_random_mix, num_batches=args.train_batches_per_epoch)


def channel_data_config(args, data_config: dict) -> dict:
    """timm's data config for the model's input channels: its input size's and, where the model's pretrained config
    has another count (e.g. RGB's three for --in-chans 1), mean and std averaged over the channels, as timm's
    prefetcher does (`adapt_to_chs`). timm's transforms without the prefetcher would fail on them."""
    from timm.data.loader import adapt_to_chs
    chans = input_channels(args)
    return dict(data_config, input_size=(chans, *data_config['input_size'][1:]),
                mean=adapt_to_chs(data_config['mean'], chans), std=adapt_to_chs(data_config['std'], chans))


def _data_loader(loader) -> torch.utils.data.DataLoader:
    """The torch DataLoader under timm's PrefetchLoader and the two-view loader."""
    while not isinstance(loader, torch.utils.data.DataLoader):
        loader = loader.loader
    return loader


def _replace_data_loader(loader, replace):
    """`loader` with the torch DataLoader under its wrappers replaced by `replace(data_loader)`."""
    if isinstance(loader, torch.utils.data.DataLoader):
        return replace(loader)
    loader.loader = _replace_data_loader(loader.loader, replace)
    return loader


class _EpochPasses:
    """The batch sampler as timm's MultiEpochsDataLoader reads it, one pass per epoch: each pass after the first
    sets the next epoch itself, as timm's `_RepeatSampler` does, since the loader starts it while the loop still
    trains the one before (with workers). The first keeps the sampler's state as the resume left it."""

    def __init__(self, batches):
        self.batches, self.pass_epoch = batches, None

    def __iter__(self):
        if self.pass_epoch is None:
            if self.batches.start_batch:  # known only once a checkpoint has set the start batch
                raise InputError(f'--use-multi-epochs-loader: timm\'s MultiEpochsDataLoader starts each epoch at its '
                                 f'first batch, and the checkpoint stopped at batch {self.batches.start_batch} of '
                                 f'epoch {self.batches.epoch}: resume from an epoch checkpoint (last.pth.tar), or '
                                 f'drop --use-multi-epochs-loader for this resume')
            self.pass_epoch = self.batches.epoch
        else:
            self.pass_epoch += 1
            if self.batches.epoch != self.pass_epoch:  # without workers the loop has set it already
                self.batches.set_epoch(self.pass_epoch)
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _multi_epochs_loader(data_loader: torch.utils.data.DataLoader) -> torch.utils.data.DataLoader:
    """`data_loader` as timm's MultiEpochsDataLoader: one iterator (and one set of workers) for the whole run, the
    next epoch's batches loading while the current one ends."""
    from timm.data.loader import MultiEpochsDataLoader
    return MultiEpochsDataLoader(
        data_loader.dataset, batch_sampler=_EpochPasses(data_loader.batch_sampler), num_workers=data_loader.num_workers,
        collate_fn=data_loader.collate_fn, pin_memory=data_loader.pin_memory,
        worker_init_fn=data_loader.worker_init_fn, persistent_workers=data_loader.persistent_workers)


def _in_timm_order(sampler) -> bool:
    return getattr(sampler, 'permutation', None) in ('torch', 'distributed')


def create_train_loader(args, dataset, sampler, data_config, device: torch.device, two_views: bool):
    """timm's training transforms, collate and prefetcher over `sampler`; two views for the intra term.

    The workers persist across epochs, as in timm (`create_loader`'s default). With --use-multi-epochs-loader a run
    in timm's batch order (no SynerMix) gets timm's MultiEpochsDataLoader, as timm's train.py does; other runs keep
    persistent workers, whose RNG streams an epoch checkpoint holds (`WorkerRng`): timm's loader would start the
    next epoch's batches before the checkpoint, which then could not hold where the streams stand.
    """
    data_config = channel_data_config(args, data_config)
    interpolation = args.train_interpolation
    if args.no_aug or not interpolation:
        interpolation = data_config['interpolation']
    original_transform = None
    if two_views:
        original_transform = create_original_transform(data_config, use_prefetcher=args.prefetcher)
    kwargs = dict(
        input_size=data_config['input_size'], is_training=True, use_prefetcher=args.prefetcher, device=device,
        num_workers=args.workers, pin_memory=args.pin_mem, persistent_workers=True,
        img_dtype=args.model_dtype_torch or torch.float32,
        worker_seeding=args.worker_seeding, mean=data_config['mean'], std=data_config['std'], re_prob=args.reprob,
        re_mode=args.remode, re_count=args.recount, re_split=args.resplit, interpolation=interpolation,
        crop_pct=data_config['crop_pct'],
        no_aug=args.no_aug, train_crop_mode=args.train_crop_mode, scale=args.scale, ratio=args.ratio,
        hflip=args.hflip, vflip=args.vflip, color_jitter=args.color_jitter, color_jitter_prob=args.color_jitter_prob,
        grayscale_prob=args.grayscale_prob or 0., gaussian_blur_prob=args.gaussian_blur_prob or 0.,
        auto_augment=args.aa, num_aug_splits=args.aug_splits, collate_fn=collate_mixup(args))
    if isinstance(sampler, LoaderEpochs):
        from timm.data import create_loader
        loader = create_loader(dataset, batch_size=args.batch_size, distributed=args.distributed,
                               use_multi_epochs_loader=args.use_multi_epochs_loader, **_scheduled_sizes(args),
                               **kwargs)
        sampler.loader, sampler.num_batches = loader, len(loader)
        return loader
    try:
        loader = create_synermix_loader(dataset, batch_sampler=sampler, two_views=two_views,
                                        original_transform=original_transform, **kwargs)
    except ValueError as e:
        raise InputError(to_flags(str(e)))
    if args.use_multi_epochs_loader and not args.synermix and _in_timm_order(sampler):
        loader = _replace_data_loader(loader, _multi_epochs_loader)
    if args.workers:
        data_loader = _data_loader(loader)
        # The workers collate (and mix, under the prefetcher) with their own copy of the collate function: as in
        # timm, --mixup-off-epoch does not reach a mix there.
        sampler.worker_rng.attach(data_loader)
        if _resumed_workers(args):
            data_loader.generator = torch.Generator()  # the workers' streams come from the checkpoint (WorkerRng)
    return loader


def reference_batch_size(args, sampler) -> float:
    """The batch timm scales the LR (and, with --variable-batch-loss-scale, the loss) by: the average of a
    scheduled-resolution loader, else -b (before supplementation)."""
    batch_sampler = getattr(getattr(sampler, 'loader', None), 'batch_sampler', None)
    return float(getattr(batch_sampler, 'average_batch_size', args.batch_size))


def create_eval_loader(args, dataset, data_config, device: torch.device, distributed: bool):
    """timm's eval loader; `distributed=False` under DDP gives rank 0 the whole set in order (features.npz)."""
    from timm.data import create_loader
    data_config = channel_data_config(args, data_config)
    return create_loader(
        dataset, input_size=data_config['input_size'], batch_size=args.validation_batch_size or args.batch_size,
        is_training=False, interpolation=data_config['interpolation'], mean=data_config['mean'],
        std=data_config['std'], num_workers=args.workers, distributed=distributed, crop_pct=data_config['crop_pct'],
        pin_memory=args.pin_mem, device=device, use_prefetcher=args.prefetcher,
        img_dtype=args.model_dtype_torch or torch.float32)


def continue_eval_workers(args, loader, evaluated: bool) -> None:
    """Before an evaluation of a resumed run: where the interrupted run had `evaluated` already, its eval loader's
    persistent workers drew their seed from the global RNG at that first evaluation, and drawing it again would shift
    the global RNG (and the next epoch's batch order) against an uninterrupted run. Eval transforms draw nothing, so
    any seed serves."""
    if evaluated and _resumed_workers(args):
        _data_loader(loader).generator = torch.Generator()
