"""Training and evaluation datasets from train.py's flags (timm's create_dataset), and the β holdout.

`--val-holdout` evaluates on a stratified part of the training set: the paper's protocol for choosing β.
"""
import logging
import os
from typing import List, Optional, Tuple

import torch.utils.data

from ..method.sampler import dataset_labels
from .errors import InputError
from .splits import split_indices

__all__ = ['TransformSubset', 'holdout_split', 'input_channels', 'create_datasets', 'class_names',
           'num_classes_from_data']

_logger = logging.getLogger('train')


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


def _is_folder_dataset(name):
    return not name or name.lower().startswith(('folder/', 'imagefolder/', 'tar/'))


def _check_symlink_loops(root: str) -> None:
    """A link to a folder above it: timm's reader follows links, and would read the images below it again at
    every level until the path is too long (the data set silently multiplied)."""
    for folder, subfolders, _ in os.walk(root):
        here = os.path.realpath(folder)
        for name in subfolders:
            path = os.path.join(folder, name)
            target = os.path.realpath(path)
            if os.path.islink(path) and (here == target or here.startswith(target.rstrip(os.sep) + os.sep)):
                raise InputError(f'{path!r} links to {target!r}, a folder above it: this symlink loop would read '
                                 f'its images again at every level; remove the link')


def _check_data_dir(args) -> None:
    if _is_folder_dataset(args.dataset):
        if not args.data_dir:
            raise InputError('no dataset given: pass the ImageFolder root as DIR (or --data-dir), or --dataset torch/<name>')
        if not os.path.exists(args.data_dir):
            raise InputError(f'data dir {args.data_dir!r} does not exist: pass the ImageFolder root (with '
                             f'{args.train_split}/ and {args.val_split or "validation"}/ class folders) as DIR')
        if os.path.isdir(args.data_dir) and not os.listdir(args.data_dir):
            raise InputError(f'data dir {args.data_dir!r} is empty: put the images in {args.train_split}/<class>/ '
                             f'(and {args.val_split or "validation"}/<class>/) under it, or pass another DIR')
        if os.path.isdir(args.data_dir):
            _check_symlink_loops(args.data_dir)
        if args.val_split and not args.val_holdout and os.path.isdir(args.data_dir):
            from timm.data.dataset_factory import _search_split
            if os.path.abspath(_search_split(args.data_dir, args.val_split)) == os.path.abspath(args.data_dir):
                raise InputError(f'no {args.val_split!r} folder under {args.data_dir!r}: add one, pass --val-split '
                                 f'NAME, --val-holdout 0.1 to hold out part of the training set, or --val-split "" '
                                 f'for no eval')


def input_channels(args) -> int:
    """The model's input channels: --in-chans, else --input-size's first, else 3."""
    return args.in_chans if args.in_chans is not None else (args.input_size[0] if args.input_size else 3)


def _make_dataset(args, split: str, is_training: bool, class_map=None):
    from timm.data import create_dataset
    num_samples = args.train_num_samples if is_training else args.val_num_samples
    # timm's default: greyscale images for a model without three input channels
    img_mode = args.input_img_mode or ('RGB' if input_channels(args) == 3 else 'L')
    try:
        dataset = create_dataset(
            args.dataset, root=args.data_dir, split=split, is_training=is_training, seed=args.seed,
            num_samples=num_samples, repeats=args.epoch_repeats,
            class_map=class_map if class_map is not None else args.class_map, download=args.dataset_download,
            batch_size=args.batch_size, input_img_mode=img_mode, input_key=args.input_key,
            target_key=args.target_key, trust_remote_code=args.dataset_trust_remote_code)
    except (RuntimeError, FileNotFoundError, AssertionError, ValueError) as e:
        hint = ' (add --dataset-download to fetch it)' if args.dataset.startswith('torch/') and \
            not args.dataset_download else ''
        if 'num_samples' in str(e):
            hint = f' (pass --{"train" if is_training else "val"}-num-samples N: the stream\'s size)'
        raise InputError(f'cannot load {split!r} split of {args.dataset or "ImageFolder"} at {args.data_dir!r}: '
                         f'{str(e).splitlines()[0] if str(e) else type(e).__name__}{hint}')
    if not isinstance(dataset, torch.utils.data.IterableDataset):
        flag = f'--{"train" if is_training else "val"}-num-samples {num_samples}' if num_samples is not None else \
            f'--epoch-repeats {args.epoch_repeats:g}' if args.epoch_repeats and is_training else None
        if flag:
            _logger.warning(f'{flag} is ignored, as in timm: it applies to streaming datasets (hfids/, wds/, tfds/), '
                            f'and {args.dataset or "ImageFolder"} is not one')
    if len(dataset) == 0:
        raise InputError(f'the {split!r} split at {args.data_dir!r} has no images: put them in '
                         f'{split}/<class>/ folders, or pass another DIR')
    return dataset


def _class_to_idx(dataset):
    reader = getattr(dataset, 'reader', None)
    return getattr(reader, 'class_to_idx', None) or getattr(dataset, 'class_to_idx', None)


def _refuse_eval_only_classes(args, unknown, where: str) -> None:
    if unknown:
        more = f' (and {len(unknown) - 10} more)' if len(unknown) > 10 else ''
        raise InputError(f'the {args.val_split!r} split has classes the {args.train_split!r} split lacks: '
                         f'{", ".join(map(str, unknown[:10]))}{more}; its accuracy would be computed on labels the '
                         f'model never trained on: {where}')


def _check_eval_labels(args, dataset_train, dataset_eval) -> None:
    """Refuse eval labels no training image has: a shared class map (--class-map, hfds/ class names) gives a
    class without training images a head output that is never a target, and timm would evaluate it silently."""
    if isinstance(dataset_train, torch.utils.data.IterableDataset) or \
            isinstance(dataset_eval, torch.utils.data.IterableDataset):
        return
    try:
        train_labels, eval_labels = set(dataset_labels(dataset_train).tolist()), dataset_labels(dataset_eval)
    except TypeError:  # labels not readable without decoding every image: left to the data set's owner
        return
    unknown = sorted(set(eval_labels.tolist()) - train_labels)
    names = class_names(dataset_eval)
    _refuse_eval_only_classes(args, [names[i] if names and i < len(names) and names[i] else i for i in unknown],
                              f'remove their {args.val_split} images, or add training images of them')


def _eval_dataset(args, dataset_train):
    """The eval split labelled with the training split's class map (timm would give each split its own)."""
    dataset_eval = _make_dataset(args, args.val_split, False)
    train_map, eval_map = _class_to_idx(dataset_train), _class_to_idx(dataset_eval)
    if train_map and eval_map and train_map != eval_map:
        _refuse_eval_only_classes(args, sorted(set(eval_map) - set(train_map)),
                                  f'remove those folders or add them to {args.train_split}/')
        missing = sorted(set(train_map) - set(eval_map))
        if missing:
            _logger.warning(f'{len(missing)} training class(es) have no {args.val_split!r} images: '
                            f'{", ".join(map(str, missing[:20]))}{" ..." if len(missing) > 20 else ""}')
        dataset_eval = _make_dataset(args, args.val_split, False, class_map=dict(train_map))
    _check_eval_labels(args, dataset_train, dataset_eval)
    return dataset_eval


def create_datasets(args):
    """(training dataset, eval dataset or None) from the data flags; eval labels use training's class map."""
    _check_data_dir(args)
    dataset_train = _make_dataset(args, args.train_split, True)
    dataset_eval = None
    if args.val_holdout:
        if not 0.0 < args.val_holdout < 1.0:
            raise InputError(f'--val-holdout {args.val_holdout} must be a fraction in (0, 1), e.g. 0.1')
        dataset_train, dataset_eval = holdout_split(
            dataset_train, _make_dataset(args, args.train_split, False), args.val_holdout, seed=args.seed)
    elif args.val_split:
        dataset_eval = _eval_dataset(args, dataset_train)
    return dataset_train, dataset_eval


def class_names(dataset) -> Optional[List[str]]:
    """Class names by index from the dataset's class map (timm reader or torchvision), or None."""
    reader = getattr(getattr(dataset, 'dataset', dataset), 'reader', None)
    class_to_idx = getattr(reader, 'class_to_idx', None) or getattr(getattr(dataset, 'dataset', dataset),
                                                                   'class_to_idx', None)
    if not class_to_idx:
        return None
    names = [None] * (max(class_to_idx.values()) + 1)
    for name, idx in class_to_idx.items():
        names[idx] = str(name)
    return names


def num_classes_from_data(args, labels, names) -> Optional[int]:
    """--num-classes, else the training set's class count. Checked here, not in validation.py: the count is known
    once the data is read."""
    if not names and labels is None:  # a stream without a class map
        if args.num_classes is None:
            raise InputError(f'the streaming dataset {args.dataset!r} gives no class count up front: pass '
                             f'--num-classes')
        return args.num_classes
    data_classes = len(names) if names else int(labels.max()) + 1
    if args.num_classes is None:
        _logger.info(f'--num-classes not given: {data_classes} from the training set.')
        return data_classes
    if args.num_classes > data_classes:  # allowed, as in timm (e.g. keeping a pretrained 1000-way head)
        _logger.warning(f'--num-classes {args.num_classes} but the training set has {data_classes} classes: outputs '
                        f'{data_classes}..{args.num_classes - 1} are never a target; drop --num-classes to size the '
                        f'head from the data')
    return args.num_classes
