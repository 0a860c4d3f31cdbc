"""Model set-up for training: the ResNet CIFAR stem and fine-tuning from a local weights file."""
import logging
import os
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from .errors import InputError, first_line

__all__ = ['apply_cifar_stem', 'mismatched_keys', 'create_train_model', 'create_model_from_args', 'create_run_model']

_logger = logging.getLogger(__name__)


def apply_cifar_stem(model: nn.Module) -> nn.Module:
    """ResNet CIFAR stem, as the authors' code: conv1 becomes 3x3 stride 1 (padding 1), max-pool removed.

    Args:
        model: timm ResNet with a single `conv1` and a `maxpool` (modified in place).

    Example:
        ```python
        model = apply_cifar_stem(timm.create_model('resnet18', num_classes=100))
        ```
    """
    conv1 = getattr(model, 'conv1', None)
    if not isinstance(conv1, nn.Conv2d) or not hasattr(model, 'maxpool'):
        raise InputError(f'--cifar-stem needs a timm ResNet with a single conv1 and a maxpool ({type(model).__name__} '
                         f'has none): use e.g. --model resnet18, or drop --cifar-stem')
    model.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, kernel_size=3, stride=1, padding=1,
                            bias=conv1.bias is not None)
    model.maxpool = nn.Identity()
    return model


def _classifier_keys(model: nn.Module) -> List[str]:
    names = getattr(model, 'pretrained_cfg', {}).get('classifier')
    if names is None:
        return []
    names = [names] if isinstance(names, str) else list(names)
    return [n + suffix for n in names for suffix in ('.weight', '.bias')]


def _head_to_reset(model: nn.Module, state_dict: Dict[str, torch.Tensor], keep_head: bool = False) -> List[str]:
    """Classifier keys of the file not to load: all of them, as timm resets the head; with `keep_head`, those whose
    shape differs from the model's (another class count)."""
    own = model.state_dict()
    return [k for k in _classifier_keys(model) if k in state_dict and k in own and
            (not keep_head or state_dict[k].shape != own[k].shape)]


def mismatched_keys(model: nn.Module, state_dict: Dict[str, torch.Tensor], ignore=()) -> List[str]:
    """Keys of `state_dict` that do not fit `model`: missing, unexpected, or of another shape.

    Args:
        model: Target model.
        state_dict: Weights to load.
        ignore: Keys to leave out (e.g. the classifier, which fine-tuning resets).

    Returns:
        Descriptions such as 'conv1.weight: file (64, 3, 7, 7) vs model (64, 3, 3, 3)'; empty when all fit.
    """
    own = model.state_dict()
    out = []
    for k, v in own.items():
        if k in ignore:
            continue
        if k not in state_dict:
            out.append(f'{k}: missing in file')
        elif tuple(state_dict[k].shape) != tuple(v.shape):
            out.append(f'{k}: file {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}')
    out += [f'{k}: not in model' for k in state_dict if k not in own and k not in ignore]
    return out


def _weights_format(path: str) -> str:
    """'safetensors', 'torch' (a zip or a pickle, as torch.save writes) or '' (neither), from the first bytes."""
    with open(path, 'rb') as f:
        head = f.read(16)
    if head[:2] == b'PK' or head[:1] == b'\x80':
        return 'torch'
    header_size = int.from_bytes(head[:8], 'little') if len(head) >= 9 else 0
    return 'safetensors' if 0 < header_size < 100_000_000 and head[8:9] == b'{' else ''


def _read_weights(path: str) -> Dict[str, torch.Tensor]:
    from timm.models import load_state_dict
    fix = 'pass a .safetensors, .pth or timm .pth.tar file of weights'
    if not _weights_format(path):
        raise InputError(f'--pretrained-path {path!r} is not a weights file (neither safetensors nor torch.save '
                         f'data): {fix}')
    try:
        return load_state_dict(path)
    except Exception as e:  # truncated, or a pickle of more than tensors
        raise InputError(f'--pretrained-path {path!r} could not be read ({type(e).__name__}: '
                         f'{first_line(e)[:160]}): {fix}')


def _fit_error(path: str, model_name: str, bad: List[str]) -> InputError:
    more = f' (and {len(bad) - 4} more)' if len(bad) > 4 else ''
    return InputError(f'--pretrained-path {path!r} does not fit --model {model_name}: mismatched keys '
                      f'{"; ".join(bad[:4])}{more}. Use the checkpoint\'s architecture (and --cifar-stem if it '
                      f'was trained with it)')


def _load_pretrained(model_name: str, num_classes: int, pretrained_path: str, cifar_stem: bool, keep_head: bool,
                     kwargs: Dict) -> nn.Module:
    """The model with `pretrained_path`'s weights (see `create_train_model`)."""
    from timm.models import create_model
    if os.path.isdir(pretrained_path):
        raise InputError(f'--pretrained-path {pretrained_path!r} is a folder: pass the weights file in it (e.g. '
                         f'model.safetensors)')
    if not os.path.isfile(pretrained_path):
        raise InputError(f'--pretrained-path {pretrained_path!r} does not exist: pass a local weights file')
    pretrained_sd = _read_weights(pretrained_path)
    if cifar_stem:
        model = apply_cifar_stem(create_model(model_name, **kwargs))
        reset = _head_to_reset(model, pretrained_sd, keep_head)
        bad = mismatched_keys(model, pretrained_sd, ignore=reset)
        if bad:
            raise _fit_error(pretrained_path, model_name, bad)
        model.load_state_dict({k: v for k, v in pretrained_sd.items() if k not in reset}, strict=False)
    else:
        # timm's pretrained loader, so model-specific filters (e.g. position embedding resizing)
        # and input-channel adaptation apply as they do for hub weights; it resets the classifier
        # when the overlay's class count differs from num_classes, which -1 always does (timm's train.py).
        from timm.models import get_pretrained_cfg_value
        names = get_pretrained_cfg_value(model_name, 'classifier') or []
        names = [names] if isinstance(names, str) else list(names)
        weights = [n + '.weight' for n in names if n + '.weight' in pretrained_sd]
        head = pretrained_sd[weights[0]].shape[0] if weights and keep_head else -1
        try:
            overlay = dict(kwargs.pop('pretrained_cfg_overlay', None) or {}, file=pretrained_path, num_classes=head)
            model = create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except RuntimeError as e:
            plain = create_model(model_name, **kwargs)
            bad = mismatched_keys(plain, pretrained_sd, ignore=_head_to_reset(plain, pretrained_sd, keep_head))
            raise _fit_error(pretrained_path, model_name, bad or [str(e).splitlines()[0][:200]])
        reset = [] if head == num_classes else [n + suffix for n in names for suffix in ('.weight', '.bias')]
        # Without the head timm loads non-strictly: a missing or extra key would pass with a warning only.
        own = model.state_dict()
        bad = [f'{k}: missing in file' for k in own if k not in pretrained_sd and k not in reset] + \
            [f'{k}: not in model' for k in pretrained_sd if k not in own and k not in reset]
        if bad:
            raise _fit_error(pretrained_path, model_name, bad)
    _logger.info(f'Loaded pretrained weights from {pretrained_path} (classifier reset: {reset or "no"}'
                 f'{", kept by --pretrained-keep-head" if not reset else ""})')
    return model


def create_train_model(
        model_name: str,
        num_classes: int,
        pretrained: bool = False,
        pretrained_path: Optional[str] = None,
        cifar_stem: bool = False,
        initial_checkpoint: str = '',
        keep_head: bool = False,
        **kwargs,
) -> nn.Module:
    """`timm.create_model` for training, with the CIFAR stem and fine-tuning from a local file.

    With `pretrained_path` the file's weights are loaded through timm's pretrained path (its
    filters and input-channel adaptation apply) and the classifier is reset, as timm's train.py
    resets it (`num_classes=-1` in the overlay): the file's head belongs to another task even when
    its class count matches. `keep_head=True` keeps a head of the same size; nothing is downloaded. Weights that do not fit the model raise an
    `InputError` naming the mismatched keys.

    Args:
        model_name: timm model name.
        num_classes: Classifier size.
        pretrained: Download/load timm's pretrained weights.
        pretrained_path: Local .safetensors / .pth / timm .pth.tar to fine-tune from.
        cifar_stem: Apply `apply_cifar_stem` (pretrained weights are loaded after the swap).
        initial_checkpoint: Checkpoint loaded into the finished model (timm's --initial-checkpoint).
        keep_head: Keep the file's classifier when its class count equals `num_classes`.
        **kwargs: Passed to `timm.create_model`.

    Example:
        ```python
        model = create_train_model('resnet18', 10, pretrained_path='run/model_best.safetensors')
        ```
    """
    from timm.models import create_model, load_checkpoint
    kwargs['num_classes'] = num_classes
    if not pretrained_path:
        try:
            model = create_model(model_name, pretrained=pretrained, **kwargs)
        except (OSError, RuntimeError) as e:
            if not pretrained:
                raise
            # timm's train.py ends here in the hub's traceback (offline, or weights that do not exist)
            raise InputError(f'--pretrained: no weights for --model {model_name} ({type(e).__name__}: '
                             f'{first_line(e)[:160]}): pass a local weights file with --pretrained-path FILE, or '
                             f'train from scratch with --no-pretrained (it also turns a config file\'s pretrained: '
                             f'true off)')
        if cifar_stem:
            if pretrained:
                _logger.warning('--cifar-stem replaces the pretrained conv1 with a new, randomly initialised 3x3 '
                                'stride-1 conv: its pretrained weights are not used')
            apply_cifar_stem(model)
    else:
        model = _load_pretrained(model_name, num_classes, pretrained_path, cifar_stem, keep_head, kwargs)
    if initial_checkpoint:
        if not os.path.isfile(initial_checkpoint):
            raise InputError(f'--initial-checkpoint {initial_checkpoint!r} does not exist: pass a checkpoint file')
        try:
            load_checkpoint(model, initial_checkpoint)
        except Exception as e:  # truncated, not a torch file, or weights of another model
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise InputError(f'--initial-checkpoint {initial_checkpoint!r} could not be loaded into --model '
                             f'{model_name} ({type(e).__name__}: {first}): pass a complete checkpoint of that model')
    return model


def create_model_from_args(args, num_classes: int) -> nn.Module:
    """The model of a train.py run: timm's model flags (drop rates, pooling, BatchNorm, --model-kwargs)."""
    in_chans = args.in_chans if args.in_chans is not None else (args.input_size[0] if args.input_size else 3)
    if args.fast_norm:
        from timm.layers import set_fast_norm
        set_fast_norm()
    drop_path = args.drop_path if args.drop_path is not None else args.drop_connect  # timm's deprecated alias
    kwargs = dict(
        in_chans=in_chans, drop_rate=args.drop, drop_path_rate=drop_path, drop_block_rate=args.drop_block,
        global_pool=args.gp, bn_momentum=args.bn_momentum, bn_eps=args.bn_eps,
        pretrained_cfg_overlay=args.pretrained_cfg_overlay or None, **args.model_kwargs)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    model = create_train_model(
        args.model, num_classes=num_classes, pretrained=args.pretrained, pretrained_path=args.pretrained_path,
        cifar_stem=args.cifar_stem, initial_checkpoint=args.initial_checkpoint, keep_head=args.pretrained_keep_head,
        **kwargs)
    if args.head_init_scale is not None or args.head_init_bias is not None:
        head = model.get_classifier() if hasattr(model, 'get_classifier') else None
        if not isinstance(getattr(head, 'weight', None), torch.Tensor) or getattr(head, 'bias', None) is None:
            raise InputError(f'--head-init-scale/--head-init-bias need a classifier with weight and bias; '
                             f'{args.model} has none: drop them')
        with torch.no_grad():
            if args.head_init_scale is not None:
                head.weight.mul_(args.head_init_scale)
                head.bias.mul_(args.head_init_scale)
            if args.head_init_bias is not None:
                head.bias.fill_(args.head_init_bias)
    return model


def create_run_model(args, device: torch.device):
    """(the run's model on the device, timm's data config): split BN, gradient checkpointing, dtype,
    channels_last and SyncBatchNorm in timm's order."""
    from timm.data import resolve_data_config
    from timm.layers import convert_sync_batchnorm
    from timm.models import safe_model_name
    model = create_model_from_args(args, args.num_classes)
    if args.split_bn:  # timm's order: before moving to the device
        from timm.layers import convert_splitbn_model
        model = convert_splitbn_model(model, max(args.aug_splits, 2))
    if args.grad_checkpointing:
        model.set_grad_checkpointing(enable=True)
    if args.rank == 0:
        _logger.info(f'Model {safe_model_name(args.model)} created, param count:'
                     f'{sum(m.numel() for m in model.parameters())}')
    data_config = resolve_data_config(vars(args), model=model, verbose=args.rank == 0)
    model.to(device=device, dtype=args.model_dtype_torch)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    if args.distributed and args.sync_bn:
        model = convert_sync_batchnorm(model)
    return model, data_config
