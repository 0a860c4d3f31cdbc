"""Training configuration: YAML config files (timm style), the paper's method presets as flags, and the one step
that settles a parsed command into the run's read-only configuration (`settle`)."""
import argparse
import difflib
import logging
import os
from datetime import datetime
from typing import Dict, Iterable, List

import yaml

from .errors import InputError
from ..method.presets import PAPER_MIXUP_ALPHA, PRESETS, Preset, find_preset, get_preset

__all__ = ['RUN_IDENTITY', 'RESUMABLE', 'identity_changes', 'RunArgs', 'settle', 'parser_dests', 'load_config',
           'args_to_yaml', 'derive_method_name', 'apply_method', 'run_preset', 'inter_kind', 'inter_name']

_logger = logging.getLogger(__name__)


# The headline of what a run is (key, flag), which results.json records under "settings".
RUN_IDENTITY = (('model', '--model'), ('method', '--method'), ('synermix_beta', '--synermix-beta'),
                ('synermix_batches', '--synermix-batches'), ('batch_size', '-b'), ('mixup', '--mixup'),
                ('cutmix', '--cutmix'), ('aug_splits', '--aug-splits'), ('aug_repeats', '--aug-repeats'))

# The options a resume may change: the schedule's length and the optimisation (as timm), where the run reads and
# writes, how it logs and checkpoints, and how it executes (device, precision of the autocast, compile, workers;
# the seed, since the batch order and RNG continue the checkpoint's). Every other option is what the run is.
RESUMABLE = frozenset({
    'epochs', 'start_epoch', 'stop_epoch', 'cooldown_epochs', 'sched', 'sched_on_updates', 'lr', 'lr_base',
    'lr_base_size', 'lr_base_scale', 'lr_cycle_decay', 'lr_cycle_limit', 'lr_cycle_mul', 'lr_decay_fn',
    'lr_k_decay', 'lr_noise', 'lr_noise_pct', 'lr_noise_std', 'lr_stable_timescale', 'min_lr', 'warmup_lr',
    'warmup_epochs', 'warmup_prefix', 'decay_epochs', 'decay_milestones', 'decay_rate', 'patience_epochs',
    'opt', 'opt_betas', 'opt_eps', 'opt_kwargs', 'momentum', 'weight_decay', 'layer_decay', 'layer_decay_min_scale',
    'layer_decay_no_opt_scale', 'clip_grad', 'clip_mode', 'no_resume_opt',
    'resume', 'output', 'experiment', 'config', 'debug', 'data', 'data_dir', 'seed',
    'log_interval', 'recovery_interval', 'checkpoint_hist', 'save_epochs', 'save_images', 'log_wandb',
    'wandb_project', 'wandb_tags', 'wandb_resume_id', 'val_interval', 'validation_batch_size', 'report_last_k',
    'no_feature_metrics', 'device', 'device_modules', 'dist_timeout', 'local_rank', 'amp', 'amp_dtype',
    'torchcompile', 'torchcompile_mode', 'channels_last', 'fuser', 'grad_checkpointing', 'synchronize_step',
    'no_ddp_bb', 'workers', 'pin_mem', 'use_multi_epochs_loader', 'worker_seeding'})


def identity_changes(saved: argparse.Namespace, args: argparse.Namespace, keys: Iterable[str]) -> List[str]:
    """'--flag old -> new' for each option in `keys` a resume would change although it is not `RESUMABLE`.

    Options the checkpoint does not record (e.g. SynerMix's in a checkpoint of timm's own train.py) and a class
    count left to the data (None now) are not compared."""
    changed = []
    for key in sorted(set(keys) - RESUMABLE):
        if not hasattr(saved, key) or (key == 'num_classes' and args.num_classes is None):
            continue
        old, new = getattr(saved, key), getattr(args, key)
        if old != new:
            changed.append(f'--{key.replace("_", "-")} {old} -> {new}')
    return changed


def parser_dests(parser: argparse.ArgumentParser) -> List[str]:
    """The option names (argparse dest names) a config file may set."""
    return sorted({a.dest for a in parser._actions if a.dest not in ('help', argparse.SUPPRESS)})


def load_config(path: str, valid_keys: Iterable[str]) -> Dict:
    """Read a timm-style YAML config file of option: value pairs.

    Keys are argparse dest names ('-' is accepted for '_'). An unknown key is an error that names
    the closest valid key, so a typo never silently falls back to a default; so is a key given twice (or as
    both lr-base and lr_base), of which PyYAML would keep the last without a word.

    Args:
        path: YAML file.
        valid_keys: Option names the file may set, e.g. `parser_dests(parser)`.

    Returns:
        The mapping with '_' keys, ready for `parser.set_defaults(**cfg)`.

    Example:
        ```python
        parser.set_defaults(**load_config('configs/cifar100_resnet18.yaml', parser_dests(parser)))
        ```
    """
    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (list, dict)):  # unhashable: PyYAML's own error below names it
                    continue
                if key in seen and key != '<<':
                    raise InputError(f'config file {path!r}: key {key!r} is given twice (line '
                                     f'{key_node.start_mark.line + 1}): keep one of the two values')
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    if not os.path.isfile(path):
        raise InputError(f'config file {path!r} not found: pass an existing YAML file to -c/--config')
    with open(path, 'r') as f:
        try:
            cfg = yaml.load(f, Loader=UniqueKeyLoader) or {}
        except yaml.YAMLError as e:
            raise InputError(f'config file {path!r} is not valid YAML ({str(e).splitlines()[0]}): fix the syntax')
    if not isinstance(cfg, dict):
        raise InputError(f'config file {path!r} must be a mapping of option: value')
    valid = sorted(valid_keys)
    unknown, seen = [], {}
    for key in cfg:
        norm = str(key).replace('-', '_')
        if seen.setdefault(norm, key) != key:  # e.g. lr-base and lr_base
            raise InputError(f'config file {path!r}: keys {seen[norm]!r} and {key!r} set the same option: keep '
                             f'one of them')
        if norm not in valid:
            close = difflib.get_close_matches(norm, valid, n=1, cutoff=0.75)
            unknown.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ''))
    if unknown:
        raise InputError(f'config file {path!r}: unknown key{"s" if len(unknown) > 1 else ""} {", ".join(unknown)}: '
                         f'keys are train.py option names with _ for -')
    return {str(k).replace('-', '_'): v for k, v in cfg.items()}


def args_to_yaml(args: argparse.Namespace, keys: Iterable[str]) -> str:
    """args.yaml text: every option by dest name, loadable again through `load_config`."""
    return yaml.safe_dump({k: getattr(args, k) for k in keys}, default_flow_style=False)


def _cutmix_given(args) -> bool:
    return args.cutmix > 0 or args.cutmix_minmax is not None


def _inter_given(args) -> bool:
    return args.mixup > 0 or _cutmix_given(args)


def inter_kind(args: argparse.Namespace):
    """The run's inter-class mixing, decided once from the flags: 'manifold', 'mixup' (MixUp and/or CutMix) or None."""
    return 'manifold' if args.manifold_mixup else ('mixup' if _inter_given(args) else None)


def inter_name(args: argparse.Namespace):
    """What the inter-class mixing is, by name: 'mixup', 'cutmix', 'mixup-cutmix', 'manifold-mixup' or None."""
    kind = inter_kind(args)
    if kind != 'mixup':
        return 'manifold-mixup' if kind else None
    return 'mixup-cutmix' if args.mixup > 0 and _cutmix_given(args) else ('cutmix' if _cutmix_given(args) else 'mixup')


def derive_method_name(args: argparse.Namespace) -> str:
    """Name of a run configured by flags rather than --method: the paper preset's name where one matches, else
    the intra part and the mixing joined ('synermix-cutmix', 'mixup-cutmix', 'cutmix').

    Args:
        args: Namespace with synermix, synermix_source, synermix_beta, mixup, cutmix, cutmix_minmax,
            manifold_mixup.

    Example:
        ```python
        derive_method_name(Namespace(synermix=True, synermix_source='original', mixup=1.0, cutmix=0.0,
                                     cutmix_minmax=None, manifold_mixup=False))  # 'synermix'
        ```
    """
    inter = inter_kind(args)
    intra = args.synermix and args.synermix_beta != 0  # a run without the intra term is never named after SynerMix
    if inter_name(args) in ('cutmix', 'mixup-cutmix'):  # the presets mix with MixUp alone
        return 'synermix-' + inter_name(args) if intra else inter_name(args)
    return find_preset(intra, (args.synermix_source or 'original') if inter is None else 'original', inter).name


def _explicit(given: Dict[str, str]) -> set:
    """The options a --method preset honours or refuses even at their default value (`--mixup 0`): those on the
    command line, and a -c file's keys when that file names the method too. A command-line --method overrides a
    file's keys, as any flag does (a timm args.yaml holds every option, `mixup: 0.0` among them)."""
    method_in_file = not given.get('method', '-').startswith('-')
    return {dest for dest, how in given.items() if how.startswith('-') or method_in_file}


def apply_method(args: argparse.Namespace, given: Dict[str, str] = None) -> argparse.Namespace:
    """Resolve --method into the flags it stands for, reject conflicting flags, resolve the β default.

    A preset sets synermix / synermix_source / manifold_mixup and, when no inter-class alpha was
    given, the paper's mixup alpha 1.0. Without --method the flags are kept and `args.method` is
    derived from them. β defaults to 0.1 with an inter-class mixup and 0.5 for the intra term
    alone, and must lie in [0, 1]. The recorded `args.method` names what trains (docs/training.md).

    Args:
        args: Parsed train.py namespace (modified in place).
        given: `args.given_options(argv)`: an option set there at its default (`--mixup 0`) is honoured or
            refused, never replaced by a preset's value. Without it only values other than the default count.

    Returns:
        `args`, resolved.

    Example:
        ```python
        args = apply_method(parser.parse_args(['data', '--method', 'synermix']))
        assert args.synermix and args.mixup == 1.0 and args.synermix_beta == 0.1
        ```
    """
    explicit = _explicit(given or {})
    if args.method not in PRESETS and args.method == derive_method_name(args):
        args.method = None  # a name args.yaml recorded for a run of flags (synermix-cutmix), with those flags
    if args.method:
        _apply_preset(args, args.method, explicit)
    elif args.manifold_mixup:
        if _cutmix_given(args):
            raise InputError('--manifold-mixup mixes hidden states and cannot use CutMix: drop '
                             '--cutmix/--cutmix-minmax')
        if args.mixup <= 0:
            if 'mixup' in explicit:
                raise InputError(f'--manifold-mixup mixes with --mixup as its alpha, and --mixup {args.mixup:g} '
                                 f'never mixes: drop --mixup {args.mixup:g} (alpha 1.0), or drop --manifold-mixup')
            args.mixup = PAPER_MIXUP_ALPHA
    _check_never_mixes(args)
    args.synermix_source = args.synermix_source or 'original'
    _resolve_beta(args)
    _resolve_composition(args)
    if args.synermix and args.synermix_beta == 0:
        # β = 0 trains no intra term: the run is the preset's β = 0 twin, on the batches the command chose.
        twin = get_preset(args.method).at_beta_zero if args.method in PRESETS else None
        _logger.warning(f'--synermix-beta 0: no intra term runs; the run is recorded as '
                        f'{twin or "the method without it"} on {args.synermix_batches} batches.')
        args.synermix = False
        args.method = twin
    if args.synermix_beta is None or not args.synermix:
        args.synermix_beta = 0.0
    if not args.method or inter_name(args) in ('cutmix', 'mixup-cutmix'):
        args.method = derive_method_name(args)  # the presets mix with MixUp alone: a CutMix run is named for it
    return args


def _without_inter(preset: Preset) -> str:
    return find_preset(preset.intra, preset.source, None, preset.intra_mode).name


def _apply_preset(args: argparse.Namespace, name: str, explicit: set) -> None:
    """Set the flags --method NAME stands for; a flag that contradicts the preset is refused, never overridden."""
    try:
        preset = get_preset(name)
    except ValueError as e:
        raise InputError(f'--method: {e}')
    if preset.intra:
        if args.synermix_source not in (None, preset.source):
            other = 'synermix-intra-aug' if args.synermix_source == 'augmented' else 'synermix-intra'
            raise InputError(f'--method {name} mixes {preset.source} features but --synermix-source '
                             f'{args.synermix_source} was given: drop --synermix-source, or use --method {other}'
                             f'{" (without mixup)" if preset.inter else ""}')
        args.synermix = True
        args.synermix_source = preset.source
    elif args.synermix or args.synermix_source is not None:
        given = '--synermix' if args.synermix else '--synermix-source'
        raise InputError(f'--method {name} has no intra term but {given} was given: drop {given} or use '
                         f'--method synermix-intra / synermix')
    if preset.inter is None:
        if _inter_given(args) or args.manifold_mixup:
            raise InputError(f'--method {name} has no inter-class mixing but --mixup/--cutmix/--manifold-mixup was '
                             f'given: drop them or use --method {"synermix" if preset.intra else "mixup"}')
    else:
        _apply_preset_mixing(args, preset, explicit)
    if preset.intra and args.synermix_beta is None:
        args.synermix_beta = preset.default_beta


def _apply_preset_mixing(args: argparse.Namespace, preset: Preset, explicit: set) -> None:
    """The preset's MixUp or Manifold MixUp: its alpha from --mixup, else the paper's 1.0. CutMix may join or
    replace MixUp (timm's flags), and the run is then recorded as what mixes (`derive_method_name`)."""
    name, mixing = preset.name, 'Manifold MixUp' if preset.inter == 'manifold' else 'MixUp'
    if _cutmix_given(args) and (preset.inter == 'manifold' or preset.intra_mode == 'clean'):
        cutmix = f'--cutmix {args.cutmix:g}' if args.cutmix > 0 else '--cutmix-minmax'
        why = 'mixes hidden states, where CutMix boxes have no meaning' if preset.inter == 'manifold' else \
            'is the control of SynerMix with MixUp alone'
        raise InputError(f'--method {name} {why}: drop {cutmix}')
    if preset.inter == 'mixup' and args.manifold_mixup:
        raise InputError(f'--method {name} uses MixUp: drop --manifold-mixup or use --method '
                         f'{"synermix-manifold" if preset.intra else "manifold-mixup"}')
    if not _inter_given(args) and 'mixup' in explicit:
        raise InputError(f'--method {name} mixes with {mixing} but --mixup {args.mixup:g} turns it off: drop '
                         f'--mixup {args.mixup:g} (alpha {PAPER_MIXUP_ALPHA}), or use --method '
                         f'{_without_inter(preset)}')
    args.manifold_mixup = preset.inter == 'manifold'
    if not _inter_given(args):
        args.mixup = PAPER_MIXUP_ALPHA


def _check_never_mixes(args: argparse.Namespace) -> None:
    """--mixup-prob 0 never mixes: a run with mixing configured would train without it under a mixing name."""
    if inter_kind(args) is None or args.mixup_prob > 0:
        return
    if args.method:
        raise InputError(f'--mixup-prob 0 never mixes, so --method {args.method} would train without its '
                         f'{"Manifold MixUp" if args.manifold_mixup else "MixUp"}: use --method '
                         f'{_without_inter(get_preset(args.method))}, or a --mixup-prob above 0')
    mixing = '--manifold-mixup' if args.manifold_mixup else '--mixup/--cutmix'
    raise InputError(f'--mixup-prob 0 never mixes, so {mixing} would have no effect: drop them and --mixup-prob for '
                     f'a run without mixing, or give a --mixup-prob above 0')


def _resolve_beta(args: argparse.Namespace) -> None:
    """β's default (0.1 with an inter-class mixing, 0.5 without) and its checks."""
    has_inter = inter_kind(args) is not None
    if args.synermix:
        if args.synermix_beta is None:
            args.synermix_beta = find_preset(True, 'original', inter_kind(args)).default_beta
        if not 0.0 <= args.synermix_beta <= 1.0:
            raise InputError(f'--synermix-beta {args.synermix_beta} is outside [0, 1]: use e.g. 0.1 (SynerMix) or 0.5 '
                             f'(intra term alone)')
        if args.synermix_source == 'augmented' and has_inter and args.synermix_beta > 0:
            raise InputError('--synermix-source augmented mixes features that mixup already mixed: use '
                             '--synermix-source original with mixup, or drop the mixup (w-RA(aug) ablation)')
    elif args.synermix_beta not in (None, 0, 0.0):
        raise InputError(f'--synermix-beta {args.synermix_beta} weighs an intra term this run does not have: add '
                         f'--synermix (or a synermix --method), or drop --synermix-beta')


def _resolve_composition(args: argparse.Namespace) -> None:
    """The batch composition: supplemented for the intra term unless another was asked for; plain without."""
    if args.synermix_batches is None:
        args.synermix_batches = 'supplemented' if args.synermix else 'plain'
    elif args.synermix_batches == 'plain' and args.synermix and args.synermix_beta != 0:
        raise InputError('--batch-composition plain with the intra term: Eq. 1 needs two images of every class in '
                         'a batch; use supplemented, fixed, paired or paired-distinct')


def run_preset(args: argparse.Namespace) -> Preset:
    """The preset a resolved namespace stands for: --method's, else the one of its intra term, source and mixing."""
    if args.method in PRESETS:
        return PRESETS[args.method]
    inter = inter_kind(args)
    return find_preset(args.synermix, args.synermix_source if inter is None else 'original', inter)


class RunArgs(argparse.Namespace):
    """The run's settled configuration: train.py's options plus what they imply, read-only.

    A value learnt later (the class count of the data, the LR scaled by the batch, the checkpoint `--resume auto`
    found) makes a new configuration through `replace`, so no step changes what an earlier one read.
    """

    def __setattr__(self, name, value):
        if self.__dict__.get('_settled'):
            raise AttributeError(f'the run configuration is settled: {name} is derived in config.settle, or set '
                                 f'through RunArgs.replace')
        super().__setattr__(name, value)

    def replace(self, **changes) -> 'RunArgs':
        return _frozen({**self.options(), **changes})

    def options(self) -> Dict:
        return {k: v for k, v in vars(self).items() if k != '_settled'}

    def plain(self) -> argparse.Namespace:
        """A plain Namespace of plain values, as timm pickles into checkpoints (loadable without this package)."""
        return argparse.Namespace(**{k: v for k, v in self.options().items() if k != 'preset'})


def _frozen(options: Dict) -> RunArgs:
    args = RunArgs(**options)
    args._settled = True
    return args


def settle(args: argparse.Namespace, world) -> RunArgs:
    """The parsed, method-resolved flags with everything they imply, as one read-only `RunArgs`.

    Args:
        args: `parse_args` output after `apply_method`.
        world: (distributed, world_size, rank, local_rank, device) from `init_distributed_device`.

    Beyond the options it holds `preset` (the `Preset` the method stands for), `inter_kind`, `prefetcher`,
    `model_dtype_torch`, `experiment_name` and the process's place (`distributed`, `world_size`, `rank`,
    `local_rank`, `device`).
    """
    from timm.models import safe_model_name
    import torch
    distributed, world_size, rank, local_rank, device = world
    data_dir = args.data or args.data_dir  # the positional DIR beats a config file's data_dir
    if not data_dir and (args.dataset or '').lower().startswith('torch/'):
        data_dir = os.path.join('data', args.dataset.split('/', 1)[1])
    opt = args.opt.lower()
    experiment = args.experiment or '-'.join([  # timm's name for an unnamed experiment
        datetime.now().strftime('%Y%m%d-%H%M%S'), safe_model_name(args.model),
        str(args.input_size[-1] if args.input_size else (args.img_size or 'default'))])
    return _frozen({
        **vars(args), 'distributed': distributed, 'world_size': world_size, 'rank': rank, 'local_rank': local_rank,
        'device': device, 'prefetcher': not args.no_prefetcher, 'grad_accum_steps': max(1, args.grad_accum_steps),
        'model_dtype_torch': getattr(torch, args.model_dtype) if args.model_dtype else None, 'data_dir': data_dir,
        'experiment_name': experiment, 'preset': run_preset(args), 'inter_kind': inter_kind(args),
        'lr_base_scale': args.lr_base_scale or ('sqrt' if any(o in opt for o in ('ada', 'lamb')) else 'linear'),
        # timm's train.py: SyncBatchNorm already keeps the statistics in step across ranks
        'dist_bn': '' if args.sync_bn and distributed else args.dist_bn})
