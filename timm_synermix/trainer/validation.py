"""Every input checked before anything is written: YAML value types, value ranges, names timm must know, the
device, and the output folder.

Each problem is one line naming the option and the fix; several problems are reported together. Checks that need
what only exists later (the data, the model, a checkpoint) sit where that is made, each saying why.
"""
import argparse
import difflib
import logging
import os
from typing import Any, Dict, List

from .checkpoint import newest_good_checkpoint
from .config import inter_kind, run_preset
from .errors import InputError

__all__ = ['check_config_types', 'check_args', 'check_no_effect', 'check_output_path', 'check_output_dir',
           'NOT_SUPPORTED', 'ACTS_ONLY', 'WARNED_ONLY']

_logger = logging.getLogger('train')


def _type_name(kind) -> str:
    return {int: 'an integer', float: 'a number', str: 'a string'}.get(kind, getattr(kind, '__name__', str(kind)))


def _fits(value: Any, kind) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str or kind is None:
        return isinstance(value, str)
    return True


def _value_problem(action: argparse.Action, value: Any) -> str:
    """Why `value` does not fit `action` (as parsed from the command line), or ''."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)):
        return '' if isinstance(value, bool) else 'true or false (a YAML boolean, not a string)'
    if value is None:
        return '' if action.default is None else f'{_type_name(action.type)}, not empty'
    if action.nargs in ('+', '*') or isinstance(action.nargs, int):
        if action.nargs == '*' and isinstance(value, dict):
            return ''
        values = value if isinstance(value, list) else None
        if values is None or not all(_fits(_number(v, action.type), action.type) for v in values):
            return f'a list of {_type_name(action.type)}s'
        if isinstance(action.nargs, int) and len(values) != action.nargs:
            return f'a list of {action.nargs} values'
        return ''
    if action.nargs == '?' and value is None:
        return ''
    value = _number(value, action.type)
    if not _fits(value, action.type):
        return _type_name(action.type)
    if action.choices is not None and value not in action.choices:
        return f'one of {", ".join(map(str, action.choices))}'
    return ''


def _number(value: Any, kind) -> Any:
    """A numeric string as the number the command line would give (YAML 1.1 reads 1e-3 as a string)."""
    if isinstance(value, str) and kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            return value
    return value


def check_config_types(cfg: Dict[str, Any], parser: argparse.ArgumentParser, path: str) -> Dict[str, Any]:
    """`cfg` with numeric strings converted as the command line would; one InputError listing every YAML value
    whose type the command line would not have accepted."""
    actions = {a.dest: a for a in parser._actions}
    problems = [f'{key}: {value!r} must be {need}' for key, value in cfg.items()
                if key in actions and (need := _value_problem(actions[key], value))]
    if problems:
        raise InputError(f'config file {path!r}: ' + '; '.join(problems))
    out = {}
    for key, value in cfg.items():
        kind = actions[key].type if key in actions else None
        out[key] = [_number(v, kind) for v in value] if isinstance(value, list) else _number(value, kind)
    return out


def _ranges(args) -> List[str]:
    checks = [
        ('--epochs', args.epochs, args.epochs >= 1, 'at least 1'),
        ('-b/--batch-size', args.batch_size, args.batch_size >= 1, 'at least 1'),
        ('-vb/--validation-batch-size', args.validation_batch_size,
         args.validation_batch_size is None or args.validation_batch_size >= 1, 'at least 1'),
        ('--img-size', args.img_size, args.img_size is None or args.img_size >= 1, 'at least 1 (pixels)'),
        ('--input-size', args.input_size, args.input_size is None or min(args.input_size) >= 1, 'three positive ints'),
        ('-j/--workers', args.workers, args.workers >= 0, '0 or more'),
        ('--lr', args.lr, args.lr is None or args.lr >= 0, '0 or more'),
        ('--lr-base', args.lr_base, args.lr_base >= 0, '0 or more'),
        ('--warmup-epochs', args.warmup_epochs, args.warmup_epochs >= 0, '0 or more'),
        ('--cooldown-epochs', args.cooldown_epochs, args.cooldown_epochs >= 0, '0 or more'),
        ('--decay-epochs', args.decay_epochs, args.decay_epochs is None or args.decay_epochs > 0, 'above 0'),
        ('--min-lr', args.min_lr, args.min_lr >= 0, '0 or more'),
        ('--warmup-lr', args.warmup_lr, args.warmup_lr >= 0, '0 or more'),
        ('--log-interval', args.log_interval, args.log_interval >= 1, 'at least 1'),
        ('--recovery-interval', args.recovery_interval, args.recovery_interval >= 0, '0 (off) or more'),
        ('--checkpoint-hist', args.checkpoint_hist, args.checkpoint_hist >= 1, 'at least 1'),
        ('--grad-accum-steps', args.grad_accum_steps, args.grad_accum_steps >= 1, 'at least 1'),
        ('--report-last-k', args.report_last_k, args.report_last_k >= 1, 'at least 1'),
        ('--smoothing', args.smoothing, 0 <= args.smoothing < 1, 'in [0, 1)'),
        ('--mixup', args.mixup, args.mixup >= 0, '0 (off) or more'),
        ('--cutmix', args.cutmix, args.cutmix >= 0, '0 (off) or more'),
        ('--mixup-prob', args.mixup_prob, 0 <= args.mixup_prob <= 1, 'in [0, 1]'),
        ('--reprob', args.reprob, 0 <= args.reprob <= 1, 'in [0, 1]'),
        ('--drop', args.drop, 0 <= args.drop < 1, 'in [0, 1)'),
        ('--dist-timeout', args.dist_timeout, args.dist_timeout > 0, 'above 0 (seconds)'),
        ('--synermix-every', args.synermix_every, args.synermix_every >= 1, 'at least 1'),
        ('--synermix-num-synth', args.synermix_num_synth, args.synermix_num_synth >= 1, 'at least 1'),
        ('--val-interval', args.val_interval, args.val_interval >= 1, 'at least 1'),
        ('--start-epoch', args.start_epoch, args.start_epoch is None or 0 <= args.start_epoch < args.epochs,
         f'in [0, --epochs {args.epochs}): a later start trains nothing'),
    ]
    problems = [f'{flag} {value} must be {need}' for flag, value, ok, need in checks if not ok]
    if args.stop_epoch is not None and not 1 <= args.stop_epoch <= args.epochs:
        problems.append(f'--stop-epoch {args.stop_epoch} must be in [1, --epochs {args.epochs}]')
    if args.save_epochs and not all(1 <= e <= args.epochs for e in args.save_epochs):
        problems.append(f'--save-epochs {" ".join(map(str, args.save_epochs))} must each be in [1, --epochs '
                        f'{args.epochs}]')
    chans = args.in_chans or (args.input_size[0] if args.input_size else 3)
    for flag, values in (('--mean', args.mean), ('--std', args.std)):
        if values is not None and len(values) not in (1, chans):
            problems.append(f'{flag} has {len(values)} values: give 1 or {chans} (one per input channel)')
    if args.std is not None and min(args.std) <= 0:
        problems.append('--std values must be above 0')
    return problems


def _optimizer_ranges(args) -> List[str]:
    """Values torch's optimizers reject mid-setup (a negative momentum, a beta of 1 or more) or would train with
    silently (a negative weight decay grows the weights)."""
    checks = [
        ('--momentum', args.momentum, 0 <= args.momentum < 1, 'in [0, 1)'),
        ('--weight-decay', args.weight_decay, args.weight_decay >= 0, '0 (off) or more'),
        ('--opt-eps', args.opt_eps, args.opt_eps is None or args.opt_eps >= 0, '0 or more'),
        ('--opt-betas', ' '.join(map(str, args.opt_betas or ())),
         all(0 <= b < 1 for b in args.opt_betas or ()), 'each in [0, 1)'),
        ('--clip-grad', args.clip_grad, args.clip_grad is None or args.clip_grad > 0, 'above 0 (or not given)'),
    ]
    return [f'{flag} {value} must be {need}' for flag, value, ok, need in checks if not ok]


def _synermix_values(args) -> List[str]:
    """SynerMix settings torch would fail on at the first step, with a traceback."""
    problems = []
    if args.kd_model_name and not args.kd_temperature > 0:
        problems.append(f'--kd-temperature {args.kd_temperature} must be above 0: the distillation loss divides the '
                        f'logits by it (timm\'s default is 4)')
    resized = args.synermix and args.synermix_source == 'original' and args.synermix_orig_scale != 1
    if resized and args.model_dtype in ('float16', 'bfloat16') and args.device.startswith('cpu'):
        problems.append(f'--model-dtype {args.model_dtype} with --synermix-orig-scale {args.synermix_orig_scale} on '
                        f'CPU: torch has no {args.model_dtype} CPU kernel for the antialiased resize of the originals; '
                        f'use float32 weights (or --amp --amp-dtype bfloat16), a GPU, or --synermix-orig-scale 1')
    return problems


def _names(args) -> List[str]:
    import timm
    from timm.optim import list_optimizers
    problems = []
    if not timm.is_model(args.model) and not args.model.startswith(('hf-hub:', 'hf_hub:', 'local-dir:')):
        close = difflib.get_close_matches(args.model, timm.list_models(), n=3)
        problems.append(f'--model {args.model} is not a timm model' + (f' (did you mean {", ".join(close)}?)'
                                                                        if close else ': see timm.list_models()'))
    optimizers = set(list_optimizers())
    opt = args.opt.lower().split('_')[-1]
    if opt not in optimizers:
        close = difflib.get_close_matches(opt, sorted(optimizers), n=3)
        problems.append(f'--opt {args.opt} is not a timm optimizer' + (f' (did you mean {", ".join(close)}?)'
                                                                        if close else ''))
    schedulers = ('cosine', 'tanh', 'step', 'constant', 'multistep', 'plateau', 'poly', 'wsd', 'rsqrt', 'none')
    if args.sched not in schedulers:
        problems.append(f'--sched {args.sched} is not a timm scheduler: use one of {", ".join(schedulers)}')
    return problems


# timm flags accepted for compatibility that this script does not implement yet: refused when set, with why.
NOT_SUPPORTED = {
    'tta': ('--tta averages the outputs of that many consecutive eval images, which timm\'s train.py does not '
            'make augmented copies of: its accuracy would be of mixed-up images; evaluate with timm\'s validate.py '
            '--tta', lambda a: a.tta > 0),
    'naflex': ('NaFlex (--naflex-*) feeds patch dictionaries through a loader of its own, which the task does not '
               'take; not implemented', lambda a: a.naflex_loader),
    'task': ('--task: only single-label classification is trained here (SynerMix mixes the features of one class); '
             'use timm\'s train.py for other tasks', lambda a: a.task not in (None, 'classification')),
    'torchscript': ('torchscript cannot script the two-view task: use --torchcompile', lambda a: a.torchscript or a.fuser),
}


def _augmix(args) -> List[str]:
    """AugMix flags that only make sense together (timm asserts these mid-setup)."""
    splits = args.aug_splits
    problems = []
    if splits == 1 or splits < 0:
        problems.append(f'--aug-splits {splits}: use 0 (off) or 2 or more (a clean split plus augmented ones)')
    if args.jsd_loss and splits < 2:
        problems.append('--jsd-loss compares AugMix splits: add --aug-splits 3 (or 2+)')
    if args.split_bn and splits < 2 and not args.resplit:
        problems.append('--split-bn gives each split its own BatchNorm: add --aug-splits 3 (or 2+) or --resplit')
    if splits > 1 and inter_kind(args) is not None:
        problems.append(f'--aug-splits {splits} with mixup/cutmix: a mix would pair images across AugMix splits '
                        f'(timm refuses it too); drop one of them')
    return problems


STREAMS = ('hfids/', 'wds/', 'tfds/')


def _scheduled(args) -> List[str]:
    """Scheduled resolutions (timm's own loader) serve plain runs; their companion flags need --train-img-sizes."""
    problems = []
    if args.train_img_sizes and args.synermix:
        problems.append('--train-img-sizes with SynerMix: timm\'s scheduled loader draws its own batches, which '
                        'supplementation cannot complete to two images per class; drop one of them')
    companions = args.train_batch_sizes or args.train_size_probs or args.train_batches_per_epoch is not None or \
        args.variable_batch_loss_scale != 'none'
    if companions and not args.train_img_sizes:
        problems.append('--train-batch-sizes/--train-size-probs/--train-batches-per-epoch/--variable-batch-loss-scale '
                        'shape scheduled resolutions: add --train-img-sizes')
    return problems


def _streams(args) -> List[str]:
    """What a streaming dataset (no random access, no labels up front) cannot serve."""
    if not (args.dataset or '').lower().startswith(STREAMS):
        return []
    name, problems = args.dataset, []
    if args.synermix:
        problems.append(f'--synermix on the streaming dataset {name!r}: supplementation needs every image\'s label '
                        f'up front, which a stream does not give; use a map-style dataset (hfds/ instead of hfids/, '
                        f'or an ImageFolder), or drop --synermix')
    if args.aug_splits > 1 or args.aug_repeats > 1 or args.val_holdout:
        problems.append(f'--aug-splits/--aug-repeats/--val-holdout on the streaming dataset {name!r}: they need '
                        f'random access (timm wraps only map-style datasets for them); use a map-style dataset')
    return problems


def _losses_and_teachers(args) -> List[str]:
    problems = []
    if args.loss and (args.bce_loss or args.jsd_loss):
        problems.append(f'--loss {args.loss} and --{"bce" if args.bce_loss else "jsd"}-loss both choose the '
                        f'training loss: give one of them')
    if args.kd_model_name is None:
        return problems
    if args.synermix and args.kd_distill_type != 'logit':
        problems.append(f'--kd-distill-type {args.kd_distill_type} with SynerMix: only logit distillation joins the '
                        f'inter term (feature and token distillation train modules of their own); use logit')
    if not args.synermix and (args.manifold_mixup or args.aug_splits > 1):
        used = '--manifold-mixup' if args.manifold_mixup else '--aug-splits'
        problems.append(f'--kd-model-name with {used}: timm\'s distillation task trains on one plain view, with '
                        f'neither hidden-state mixing nor AugMix splits; drop one of them')
    return problems


def _batches(args) -> List[str]:
    problems = []
    fixed = args.synermix_fixed_size
    if args.synermix_batches == 'fixed' and fixed is not None and fixed < args.batch_size:
        problems.append(f'--synermix-fixed-size {fixed} is below -b {args.batch_size}: a fixed batch holds the -b '
                        f'images and tops them up to that size; use --synermix-fixed-size {args.batch_size} or more, '
                        f'or leave it out (the 95th percentile of this data\'s supplemented sizes)')
    if args.synermix_batches == 'fixed' and args.aug_repeats > 1:
        problems.append(f'--synermix-batches fixed with --aug-repeats {args.aug_repeats:g}: fixed-size batches top up '
                        f'with images of their own classes, which repeats would skew; use --synermix-batches '
                        f'supplemented')
    if args.use_multi_epochs_loader and args.train_img_sizes:
        problems.append('--use-multi-epochs-loader with --train-img-sizes: timm\'s scheduled loader does not run as a '
                        'MultiEpochsDataLoader; drop one of them')
    return problems


def _device(args) -> List[str]:
    import torch
    from timm.utils.distributed import is_distributed_env
    problems = []
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        problems.append(f'--device {args.device} but CUDA is not available: pass --device cpu')
    if args.amp and args.amp_dtype not in ('float16', 'bfloat16'):
        problems.append(f'--amp-dtype {args.amp_dtype}: use float16 or bfloat16')
    if args.model_dtype and args.model_dtype not in ('float32', 'float16', 'bfloat16'):
        problems.append(f'--model-dtype {args.model_dtype}: use float32, float16 or bfloat16')
    elif args.amp and args.model_dtype not in (None, '', 'float32'):
        problems.append(f'--model-dtype {args.model_dtype} with --amp: AMP needs float32 weights; drop one of them')
    if args.sync_bn and is_distributed_env() and args.device.startswith('cpu'):
        problems.append('--sync-bn needs a GPU (torch SyncBatchNorm has no CPU kernel): drop --sync-bn on CPU')
    return problems


def check_args(args) -> None:
    """Raise one InputError naming every out-of-range value, unknown name and timm flag not supported yet."""
    problems = _ranges(args) + _optimizer_ranges(args) + _synermix_values(args) + _names(args) + _augmix(args) + \
        _streams(args) + _scheduled(args) + _device(args) + _losses_and_teachers(args) + _batches(args)
    problems += [f'{why}' for why, given in NOT_SUPPORTED.values() if given(args)]
    if problems:
        raise InputError('; '.join(problems))


def _mixes(args) -> bool:
    return inter_kind(args) is not None


# Options that act only in some runs: (dest, whether it acts in the run as configured, what it does, how to make it
# act). Given at another value than its default where it does not act, it is refused.
ACTS_ONLY = (
    ('synermix_every', lambda a: a.synermix, 'spaces out the intra term, which this run does not have',
     'add --synermix (or a synermix --method)'),
    ('synermix_num_synth', lambda a: a.synermix and run_preset(a).intra_mode == 'synthesize',
     'sets the features the intra term synthesizes, which this run does not synthesize',
     'add --synermix (or a synermix --method)'),
    ('synermix_orig_scale', lambda a: a.synermix and a.synermix_source == 'original',
     'resizes the originals, which only the intra term on them reads', 'add --synermix (or a synermix --method)'),
    ('synermix_joint_pass', lambda a: a.synermix and a.synermix_source == 'original',
     'joins the passes of the originals and the augmented view, which this run does not have',
     'add --synermix (or a synermix --method)'),
    ('synermix_fixed_size', lambda a: a.synermix_batches == 'fixed', 'sizes fixed batches, which this run does '
     'not have', 'add --batch-composition fixed'),
    ('allow_singleton_classes', lambda a: a.synermix_batches != 'plain', 'lets a class of one image into '
     'supplemented or paired batches, and this run has plain ones', 'add --synermix or a --batch-composition'),
    ('batch_order', lambda a: a.synermix_batches == 'plain', 'orders plain batches, and this run has '
     'supplemented, fixed or paired ones', 'use --batch-composition plain'),
    ('pretrained_keep_head', lambda a: bool(a.pretrained_path), 'keeps the classifier of a --pretrained-path file',
     'add --pretrained-path FILE'),
    ('manifold_layers', lambda a: a.manifold_mixup, 'chooses the layers of Manifold MixUp, which this run does not '
     'have', 'add --manifold-mixup (or --method manifold-mixup / synermix-manifold)'),
)
# timm's mixup settings (dest, whether it acts, what it does), which timm's train.py takes silently without mixing:
# warned about, not refused, since one recipe serves every method of a comparison (the shipped configs' and the
# study's --mixup-mode elem).
WARNED_ONLY = (
    ('mixup_prob', _mixes, 'sets how often mixup or cutmix mixes, and this run does not mix'),
    ('mixup_mode', _mixes, 'sets how mixup or cutmix mixes, and this run does not mix'),
    ('mixup_off_epoch', _mixes, 'turns mixup or cutmix off, and this run does not mix'),
    ('mixup_switch_prob', lambda a: a.mixup > 0 and (a.cutmix > 0 or a.cutmix_minmax is not None),
     'switches between mixup and cutmix, and this run does not have both'),
)


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return ' '.join(map(_shown, value))
    return f'{value:g}' if isinstance(value, float) else f'{value}'


def check_no_effect(args, given: Dict[str, str], defaults: Dict[str, Any]) -> None:
    """Refuse, in one line, a flag that would have no effect in the run as configured (`ACTS_ONLY`); warn about a
    -c key that would not, and about timm's mixup settings without mixing (`WARNED_ONLY`). Only values other than
    the default count: a default has nothing to lose.

    Args:
        args: The method-resolved namespace.
        given: `args.given_options(argv)`.
        defaults: `args.option_defaults()`: the defaults before any -c file.
    """
    problems = []
    for dest, acts, does, *fix in ACTS_ONLY + WARNED_ONLY:
        value = getattr(args, dest)
        if dest not in given or value == defaults[dest] or acts(args):
            continue
        how = given[dest]
        if not how.startswith('-'):  # a -c key: "key 'mixup_mode' of configs/pets_resnet34.yaml"
            _logger.warning(f'{dest}: {_shown(value)} in {how.split(" of ", 1)[1]} has no effect in this run: it '
                            f'{does}')
            continue
        shown = how if value is True else f'{how} {_shown(value)}'
        if fix:
            problems.append(f'{shown} has no effect: it {does}; {fix[0]}, or drop it')
        else:
            _logger.warning(f'{shown} has no effect in this run: it {does}')
    if problems:
        raise InputError('; '.join(problems))


def check_output_path(args, output_dir: str, default_output: str) -> None:
    """The experiment folder lies inside --output, below no file, where this process may write: checked before
    data and model loading, so a run never fails there after its setup."""
    root, folder = os.path.abspath(args.output or default_output), os.path.abspath(output_dir)
    if os.path.commonpath([root, folder]) != root:
        raise InputError(f'--experiment {args.experiment!r} leads outside --output {root!r} (to {folder!r}): '
                         f'pass a name inside it, without .. or a leading /')
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f'output path {existing!r} is a file, not a folder: pass another --output/--experiment')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f'output folder {existing!r} is not writable (read-only, or not yours): make it writable, '
                         f'or pass another --output')


def check_output_dir(args, output_dir: str) -> None:
    """Never write into another run: a folder holding a run is continued only by resuming its own checkpoint.

    Checked once the folder's lock is held (another run may be writing it until then). A folder without
    checkpoints or results (a run that failed before its first checkpoint) is reused.
    """
    held = os.path.isdir(output_dir) and any(
        name.endswith('.pth.tar') or name == 'results.json' for name in os.listdir(output_dir))
    if not held:
        return
    if not args.resume:
        good = newest_good_checkpoint(output_dir)
        fix = f'pass --resume {good} to continue it' if good else 'remove it to start afresh'
        raise InputError(f'experiment folder {output_dir!r} holds a run: {fix}, or use another --experiment')
    resume_dir = os.path.dirname(os.path.abspath(args.resume))
    if resume_dir != os.path.abspath(output_dir):
        raise InputError(f'--resume {args.resume!r} is a checkpoint of {resume_dir!r}, but the output folder '
                         f'{output_dir!r} holds another run: resume with --experiment '
                         f'{os.path.basename(resume_dir)} (and the same --output), or a new --experiment')
