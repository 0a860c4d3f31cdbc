"""train.py's data loaders: the SynerMix training loader around the batch sampler, timm's eval loader."""
import torch

from ..method.loader import create_synermix_loader
from ..method.sampler import PairedBatchSampler, SupplementedBatchSampler
from ..method.views import create_original_transform
from .args import to_flags
from .errors import InputError

__all__ = ['LoaderEpochs', 'mixes_in_loader', 'collate_mixup', 'create_train_sampler', 'create_train_loader',
           'reference_batch_size', 'create_eval_loader']


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


def create_train_sampler(args, labels, class_names, dataset=None):
    """The training batches of --batch-composition, with or without the intra term: plain, supplemented,
    fixed-size, paired or paired with distinct classes. A streaming dataset (no labels up front) batches itself:
    plain runs only."""
    if labels is None or args.train_img_sizes:  # the flags these cannot serve were refused by check_args
        return LoaderEpochs(dataset)
    composition = args.synermix_batches
    if composition == 'fixed' and args.aug_repeats > 1:
        raise InputError(f'--synermix-batches fixed with --aug-repeats {args.aug_repeats:g}: fixed-size batches top '
                         f'up with images of their own classes, which repeats would skew; use --synermix-batches '
                         f'supplemented')
    kwargs = dict(batch_size=args.batch_size, drop_last=True, shuffle=True, seed=args.seed,
                  allow_singleton_classes=args.allow_singleton_classes, num_classes=args.num_classes,
                  class_names=class_names, num_repeats=args.aug_repeats)
    try:
        if composition in ('paired', 'paired-distinct'):
            return PairedBatchSampler(labels, distinct_classes=composition == 'paired-distinct', **kwargs)
        # Plain batches on one process come in timm's own training order (torch's RandomSampler).
        timm_order = args.batch_order == 'timm' and composition == 'plain' and not args.aug_repeats
        permutation = ('distributed' if args.distributed else 'torch') if timm_order else 'seeded'
        # With the intra term every K-th step, the steps between get plain batches (the task's step count and the
        # sampler's global batch index advance together, one per training forward).
        every = args.synermix_every if args.synermix and composition == 'supplemented' else 1
        sampler = SupplementedBatchSampler(labels, supplement=composition != 'plain', permutation=permutation,
                                           supplement_every=every, **kwargs)
        if composition == 'fixed':
            size = args.synermix_fixed_size or sampler.suggest_fixed_size()
            sampler = SupplementedBatchSampler(labels, supplement=True, fixed_size=size, **kwargs)
        return sampler
    except ValueError as e:
        raise InputError(to_flags(str(e)))


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


def create_train_loader(args, dataset, sampler, data_config, device: torch.device, two_views: bool):
    """timm's training transforms, collate and prefetcher over `sampler`; two views for the intra term."""
    interpolation = args.train_interpolation
    if args.no_aug or not interpolation:
        interpolation = data_config['interpolation']
    original_transform = None
    if two_views:
        original_transform = create_original_transform(data_config, use_prefetcher=args.prefetcher)
    kwargs = dict(
        input_size=data_config['input_size'], is_training=True, use_prefetcher=args.prefetcher, device=device,
        # --use-multi-epochs-loader keeps the workers across epochs, as timm's MultiEpochsDataLoader does; the batch
        # sampler stays in the main process, so each epoch still gets its own order.
        num_workers=args.workers, pin_memory=args.pin_mem, persistent_workers=args.use_multi_epochs_loader,
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
                               **_scheduled_sizes(args), **kwargs)
        sampler.loader, sampler.num_batches = loader, len(loader)
        return loader
    try:
        return create_synermix_loader(dataset, batch_sampler=sampler, two_views=two_views,
                                      original_transform=original_transform, **kwargs)
    except ValueError as e:
        raise InputError(to_flags(str(e)))


def reference_batch_size(args, sampler) -> float:
    """The batch timm scales the LR (and, with --variable-batch-loss-scale, the loss) by: the average of a
    scheduled-resolution loader, else -b (before supplementation)."""
    batch_sampler = getattr(getattr(sampler, 'loader', None), 'batch_sampler', None)
    return float(getattr(batch_sampler, 'average_batch_size', args.batch_size))


def create_eval_loader(args, dataset, data_config, device: torch.device, distributed: bool):
    """timm's eval loader; `distributed=False` under DDP gives rank 0 the whole set in order (features.npz)."""
    from timm.data import create_loader
    return create_loader(
        dataset, input_size=data_config['input_size'], batch_size=args.validation_batch_size or args.batch_size,
        is_training=False, interpolation=data_config['interpolation'], mean=data_config['mean'],
        std=data_config['std'], num_workers=args.workers, distributed=distributed, crop_pct=data_config['crop_pct'],
        pin_memory=args.pin_mem, device=device, use_prefetcher=args.prefetcher,
        img_dtype=args.model_dtype_torch or torch.float32)
