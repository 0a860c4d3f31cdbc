#!/usr/bin/env python3
""" SynerMix training script for PyTorch Image Models (timm).

timm's train.py flags, names, defaults and outputs, with SynerMix (spec: SYNERMIX.md) on top:

    python train.py DATA_DIR --model resnet18 --method synermix --synermix-beta 0.1
    python train.py -c configs/cifar100_resnet18.yaml --method synermix-intra
    torchrun --nproc_per_node=2 train.py DATA_DIR --model resnet50 --method synermix

Thin glue over timm's factories (create_model, create_dataset, create_loader, create_optimizer_v2,
create_scheduler_v2, ModelEmaV3 through the task) and timm_synermix: SynerMixTask, SupplementedBatchSampler,
create_synermix_loader, Mixup, ManifoldMixup; config (YAML files, --method presets), models (CIFAR stem,
--pretrained-path), splits (--val-holdout), checkpoint (atomic AtomicCheckpointSaver, RNG state, safe loading,
safetensors export), results (summary.csv, results.json).

Reliability: checkpoints are written atomically and carry everything an exact resume needs (model, optimizer,
scheduler, EMA, AMP scaler, epoch/step, sampler position, RNG states); bad input fails before anything is
written, with one line naming the problem and the fix (exit code 2; --debug shows the traceback); a NaN/inf
loss stops the run, keeping the last good checkpoint; under torchrun a dead or hung rank fails the others
within --dist-timeout seconds.

Outputs (as timm): <output>/train/<experiment>/{args.yaml, summary.csv, last.pth.tar, checkpoint-N.pth.tar,
model_best.pth.tar}, plus results.json, features.npz and model_best.safetensors.
"""
import argparse
import json
import logging
import math
import os
import sys
import time
from collections import OrderedDict
from contextlib import suppress
from datetime import datetime, timedelta
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import yaml

from timm_synermix.checkpoint import (
    AtomicCheckpointSaver, atomic_write, export_safetensors, get_rng_state, load_training_checkpoint, set_rng_state,
    to_weights_only)
from timm_synermix.config import apply_method, args_to_yaml, load_config, parser_dests
from timm_synermix.errors import InputError as UserError
from timm_synermix.models import create_train_model
from timm_synermix.results import summarize_results, write_summary
from timm_synermix.splits import holdout_split

_logger = logging.getLogger('train')

PROG = 'train.py'


# ----------------------------------------------------------------------------------------------------------------
# Arguments: timm's names, meanings and defaults; then SynerMix's.
# ----------------------------------------------------------------------------------------------------------------

class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(message)


class _ParseKwargs(argparse.Action):
    """key=value pairs (as timm's ParseKwargs), values parsed as YAML scalars."""

    def __call__(self, parser, namespace, values, option_string=None):
        kw = {}
        for value in values:
            key, _, val = value.partition('=')
            kw[key] = yaml.safe_load(val) if val else val
        setattr(namespace, self.dest, kw)


def _build_parsers():
    config_parser = _ArgumentParser(description='Training Config', add_help=False)
    config_parser.add_argument('-c', '--config', default='', type=str, metavar='FILE',
                               help='YAML config file specifying default arguments (keys: argparse dest names)')
    config_parser.add_argument('--debug', action='store_true', default=False)

    parser = _ArgumentParser(prog=PROG, description='PyTorch Image Models training with SynerMix')
    parser.add_argument('-c', '--config', default='', type=str, metavar='FILE',
                        help='YAML config file specifying default arguments (keys: argparse dest names)')

    # Dataset parameters
    group = parser.add_argument_group('Dataset parameters')
    parser.add_argument('data', nargs='?', metavar='DIR', const=None,
                        help='path to dataset (positional is *deprecated*, use --data-dir)')
    group.add_argument('--data-dir', metavar='DIR', help='path to dataset (root dir)')
    group.add_argument('--dataset', metavar='NAME', default='',
                       help='dataset type + name ("<type>/<name>") (default: ImageFolder or ImageTar if empty)')
    group.add_argument('--train-split', metavar='NAME', default='train', help='dataset train split (default: train)')
    group.add_argument('--val-split', metavar='NAME', default='validation',
                       help='dataset validation split (default: validation); empty for no evaluation')
    group.add_argument('--dataset-download', action='store_true', default=False,
                       help='Allow download of dataset for torch/ and tfds/ datasets that support it.')
    group.add_argument('--class-map', default='', type=str, metavar='FILENAME',
                       help='path to class to idx mapping file (default: "")')
    group.add_argument('--input-img-mode', default=None, type=str, help='Dataset image conversion mode for input images.')

    # Model parameters
    group = parser.add_argument_group('Model parameters')
    group.add_argument('--model', default='resnet50', type=str, metavar='MODEL',
                       help='Name of model to train (default: "resnet50")')
    group.add_argument('--pretrained', action='store_true', default=False,
                       help='Start with pretrained version of specified network (if avail)')
    group.add_argument('--pretrained-path', default=None, type=str,
                       help='Load this checkpoint (safetensors, .pth, timm .pth.tar) as the pretrained weights, '
                            'classifier reset for --num-classes (implies --pretrained, never downloads).')
    group.add_argument('--initial-checkpoint', default='', type=str, metavar='PATH',
                       help='Load this checkpoint into model after initialization (default: none)')
    group.add_argument('--resume', default='', type=str, metavar='PATH',
                       help='Resume full model and optimizer state from checkpoint (default: none)')
    group.add_argument('--no-resume-opt', action='store_true', default=False,
                       help='prevent resume of optimizer state when resuming model')
    group.add_argument('--num-classes', type=int, default=None, metavar='N',
                       help='number of label classes (default: the number of classes in the training set)')
    group.add_argument('--gp', default=None, type=str, metavar='POOL',
                       help='Global pool type, one of (fast, avg, max, avgmax, avgmaxc). Model default if None.')
    group.add_argument('--img-size', type=int, default=None, metavar='N',
                       help='Image size (default: None => model default)')
    group.add_argument('--in-chans', type=int, default=None, metavar='N',
                       help='Image input channels (default: None => 3)')
    group.add_argument('--input-size', default=None, nargs=3, type=int, metavar='N',
                       help='Input all image dimensions (d h w, e.g. --input-size 3 224 224), uses model default if empty')
    group.add_argument('--crop-pct', default=None, type=float, metavar='N',
                       help='Input image center crop percent (for validation only, and the originals view)')
    group.add_argument('--mean', type=float, nargs='+', default=None, metavar='MEAN',
                       help='Override mean pixel value of dataset')
    group.add_argument('--std', type=float, nargs='+', default=None, metavar='STD',
                       help='Override std deviation of dataset')
    group.add_argument('--interpolation', default='', type=str, metavar='NAME',
                       help='Image resize interpolation type (overrides model)')
    group.add_argument('-b', '--batch-size', type=int, default=128, metavar='N',
                       help='Input batch size for training, per process, before supplementation (default: 128)')
    group.add_argument('-vb', '--validation-batch-size', type=int, default=None, metavar='N',
                       help='Validation batch size override (default: None)')
    group.add_argument('--channels-last', action='store_true', default=False, help='Use channels_last memory layout')
    group.add_argument('--grad-accum-steps', type=int, default=1, metavar='N',
                       help='The number of steps to accumulate gradients (default: 1)')
    group.add_argument('--grad-checkpointing', action='store_true', default=False,
                       help='Enable gradient checkpointing through model blocks/stages')
    group.add_argument('--model-kwargs', nargs='*', default={}, action=_ParseKwargs)
    group.add_argument('--torchcompile-mode', type=str, default=None, help='torch.compile mode (default: None).')
    group.add_argument('--torchcompile', nargs='?', type=str, default=None, const='inductor',
                       help='Enable compilation w/ specified backend (default: inductor).')

    # Device & distributed
    group = parser.add_argument_group('Device parameters')
    group.add_argument('--device', default='cuda', type=str, help='Device (accelerator) to use.')
    group.add_argument('--amp', action='store_true', default=False, help='use AMP for mixed precision training')
    group.add_argument('--amp-dtype', default='float16', type=str,
                       help='lower precision AMP dtype (default: float16)')
    group.add_argument('--no-ddp-bb', action='store_true', default=False,
                       help='Force broadcast buffers for native DDP to off.')
    group.add_argument('--local_rank', '--local-rank', default=0, type=int)
    group.add_argument('--dist-timeout', type=float, default=600, metavar='SECONDS',
                       help='a collective that waits longer (for a rank that died or hangs) fails the run; raise it '
                            'if ranks legitimately wait longer, e.g. torch.compile warm-up (default: 600)')

    # Optimizer parameters
    group = parser.add_argument_group('Optimizer parameters')
    group.add_argument('--opt', default='sgd', type=str, metavar='OPTIMIZER', help='Optimizer (default: "sgd")')
    group.add_argument('--opt-eps', default=None, type=float, metavar='EPSILON',
                       help='Optimizer Epsilon (default: None, use opt default)')
    group.add_argument('--opt-betas', default=None, type=float, nargs='+', metavar='BETA',
                       help='Optimizer Betas (default: None, use opt default)')
    group.add_argument('--momentum', type=float, default=0.9, metavar='M', help='Optimizer momentum (default: 0.9)')
    group.add_argument('--weight-decay', type=float, default=2e-5, help='weight decay (default: 2e-5)')
    group.add_argument('--clip-grad', type=float, default=None, metavar='NORM',
                       help='Clip gradient norm (default: None, no clipping)')
    group.add_argument('--clip-mode', type=str, default='norm',
                       help='Gradient clipping mode. One of ("norm", "value", "agc")')
    group.add_argument('--layer-decay', type=float, default=None, help='layer-wise learning rate decay (default: None)')
    group.add_argument('--opt-kwargs', nargs='*', default={}, action=_ParseKwargs)

    # Learning rate schedule parameters
    group = parser.add_argument_group('Learning rate schedule parameters')
    group.add_argument('--sched', type=str, default='cosine', metavar='SCHEDULER',
                       help='LR scheduler (default: "cosine"')
    group.add_argument('--sched-on-updates', action='store_true', default=False,
                       help='Apply LR scheduler step on update instead of epoch end.')
    group.add_argument('--lr', type=float, default=None, metavar='LR',
                       help='learning rate, overrides lr-base if set (default: None)')
    group.add_argument('--lr-base', type=float, default=0.1, metavar='LR',
                       help='base learning rate: lr = lr_base * global_batch_size / base_size')
    group.add_argument('--lr-base-size', type=int, default=256, metavar='DIV',
                       help='base learning rate batch size (divisor, default: 256).')
    group.add_argument('--lr-base-scale', type=str, default='', metavar='SCALE',
                       help='base learning rate vs batch_size scaling ("linear", "sqrt", based on opt if empty)')
    group.add_argument('--lr-noise', type=float, nargs='+', default=None, metavar='pct, pct',
                       help='learning rate noise on/off epoch percentages')
    group.add_argument('--lr-noise-pct', type=float, default=0.67, metavar='PERCENT',
                       help='learning rate noise limit percent (default: 0.67)')
    group.add_argument('--lr-noise-std', type=float, default=1.0, metavar='STDDEV',
                       help='learning rate noise std-dev (default: 1.0)')
    group.add_argument('--lr-cycle-mul', type=float, default=1.0, metavar='MULT',
                       help='learning rate cycle len multiplier (default: 1.0)')
    group.add_argument('--lr-cycle-decay', type=float, default=0.5, metavar='MULT',
                       help='amount to decay each learning rate cycle (default: 0.5)')
    group.add_argument('--lr-cycle-limit', type=int, default=1, metavar='N',
                       help='learning rate cycle limit, cycles enabled if > 1')
    group.add_argument('--lr-k-decay', type=float, default=1.0, help='learning rate k-decay for cosine/poly (default: 1.0)')
    group.add_argument('--warmup-lr', type=float, default=1e-5, metavar='LR', help='warmup learning rate (default: 1e-5)')
    group.add_argument('--min-lr', type=float, default=0, metavar='LR',
                       help='lower lr bound for cyclic schedulers that hit 0 (default: 0)')
    group.add_argument('--epochs', type=int, default=300, metavar='N', help='number of epochs to train (default: 300)')
    group.add_argument('--start-epoch', default=None, type=int, metavar='N',
                       help='manual epoch number (useful on restarts)')
    group.add_argument('--decay-milestones', default=[90, 180, 270], type=int, nargs='+', metavar='MILESTONES',
                       help='list of decay epoch indices for multistep lr. must be increasing')
    group.add_argument('--decay-epochs', type=float, default=90, metavar='N', help='epoch interval to decay LR')
    group.add_argument('--warmup-epochs', type=int, default=5, metavar='N',
                       help='epochs to warmup LR, if scheduler supports')
    group.add_argument('--warmup-prefix', action='store_true', default=False,
                       help='Exclude warmup period from decay schedule.')
    group.add_argument('--cooldown-epochs', type=int, default=0, metavar='N',
                       help='epochs to cooldown LR at min_lr, after cyclic schedule ends')
    group.add_argument('--patience-epochs', type=int, default=10, metavar='N',
                       help='patience epochs for Plateau LR scheduler (default: 10)')
    group.add_argument('--decay-rate', '--dr', type=float, default=0.1, metavar='RATE',
                       help='LR decay rate (default: 0.1)')

    # Augmentation & regularization parameters
    group = parser.add_argument_group('Augmentation and regularization parameters')
    group.add_argument('--no-aug', action='store_true', default=False,
                       help='Disable all training augmentation, override other train aug args')
    group.add_argument('--train-crop-mode', type=str, default=None, help='Crop-mode in train ("rrc", "rkrc", "rkrr")')
    group.add_argument('--scale', type=float, nargs='+', default=[0.08, 1.0], metavar='PCT',
                       help='Random resize scale (default: 0.08 1.0)')
    group.add_argument('--ratio', type=float, nargs='+', default=[3. / 4., 4. / 3.], metavar='RATIO',
                       help='Random resize aspect ratio (default: 0.75 1.33)')
    group.add_argument('--hflip', type=float, default=0.5, help='Horizontal flip training aug probability')
    group.add_argument('--vflip', type=float, default=0., help='Vertical flip training aug probability')
    group.add_argument('--color-jitter', type=float, default=0.4, metavar='PCT',
                       help='Color jitter factor (default: 0.4)')
    group.add_argument('--color-jitter-prob', type=float, default=None, metavar='PCT',
                       help='Probability of applying any color jitter.')
    group.add_argument('--grayscale-prob', type=float, default=None, metavar='PCT',
                       help='Probability of applying random grayscale conversion.')
    group.add_argument('--gaussian-blur-prob', type=float, default=None, metavar='PCT',
                       help='Probability of applying gaussian blur.')
    group.add_argument('--aa', type=str, default=None, metavar='NAME',
                       help='Use AutoAugment policy. "v0" or "original". (default: None)')
    group.add_argument('--reprob', type=float, default=0., metavar='PCT', help='Random erase prob (default: 0.)')
    group.add_argument('--remode', type=str, default='pixel', help='Random erase mode (default: "pixel")')
    group.add_argument('--recount', type=int, default=1, help='Random erase count (default: 1)')
    group.add_argument('--mixup', type=float, default=0.0, help='mixup alpha, mixup enabled if > 0. (default: 0.)')
    group.add_argument('--cutmix', type=float, default=0.0, help='cutmix alpha, cutmix enabled if > 0. (default: 0.)')
    group.add_argument('--cutmix-minmax', type=float, nargs='+', default=None,
                       help='cutmix min/max ratio, overrides alpha and enables cutmix if set (default: None)')
    group.add_argument('--mixup-prob', type=float, default=1.0,
                       help='Probability of performing mixup or cutmix when either/both is enabled')
    group.add_argument('--mixup-switch-prob', type=float, default=0.5,
                       help='Probability of switching to cutmix when both mixup and cutmix enabled')
    group.add_argument('--mixup-mode', type=str, default='batch',
                       help='How to apply mixup/cutmix params. Per "batch", "pair", or "elem"')
    group.add_argument('--mixup-off-epoch', default=0, type=int, metavar='N',
                       help='Turn off mixup after this epoch, disabled if 0 (default: 0)')
    group.add_argument('--smoothing', type=float, default=0.1, help='Label smoothing (default: 0.1)')
    group.add_argument('--train-interpolation', type=str, default='random',
                       help='Training interpolation (random, bilinear, bicubic default: "random")')
    group.add_argument('--drop', type=float, default=0.0, metavar='PCT', help='Dropout rate (default: 0.)')
    group.add_argument('--drop-path', type=float, default=None, metavar='PCT', help='Drop path rate (default: None)')
    group.add_argument('--drop-block', type=float, default=None, metavar='PCT', help='Drop block rate (default: None)')

    # Batch norm parameters
    group = parser.add_argument_group('Batch norm parameters')
    group.add_argument('--bn-momentum', type=float, default=None, help='BatchNorm momentum override (if not None)')
    group.add_argument('--bn-eps', type=float, default=None, help='BatchNorm epsilon override (if not None)')
    group.add_argument('--sync-bn', action='store_true', help='Enable synchronized BatchNorm.')
    group.add_argument('--dist-bn', type=str, default='reduce',
                       help='Distribute BatchNorm stats between nodes after each epoch ("broadcast", "reduce", or "")')

    # Model Exponential Moving Average
    group = parser.add_argument_group('Model exponential moving average parameters')
    group.add_argument('--model-ema', action='store_true', default=False,
                       help='Enable tracking moving average of model weights.')
    group.add_argument('--model-ema-force-cpu', action='store_true', default=False,
                       help='Force ema to be tracked on CPU, rank=0 node only. Disables EMA validation.')
    group.add_argument('--model-ema-decay', type=float, default=0.9998,
                       help='Decay factor for model weights moving average (default: 0.9998)')
    group.add_argument('--model-ema-warmup', action='store_true', help='Enable warmup for model EMA decay.')

    # Misc
    group = parser.add_argument_group('Miscellaneous parameters')
    group.add_argument('--seed', type=int, default=42, metavar='S', help='random seed (default: 42)')
    group.add_argument('--worker-seeding', type=str, default='all', help='worker seed mode (default: all)')
    group.add_argument('--log-interval', type=int, default=50, metavar='N',
                       help='how many batches to wait before logging training status')
    group.add_argument('--recovery-interval', type=int, default=0, metavar='N',
                       help='how many batches to wait before writing recovery checkpoint (a kill loses at most N '
                            'steps; resuming it is bit-exact with -j 0 --no-prefetcher, else the same batches)')
    group.add_argument('--synchronize-step', action='store_true', default=False,
                       help='torch.cuda.synchronize() at the end of each step (accurate step times, slower)')
    group.add_argument('--checkpoint-hist', type=int, default=10, metavar='N',
                       help='number of checkpoints to keep (default: 10)')
    group.add_argument('-j', '--workers', type=int, default=4, metavar='N',
                       help='how many training processes to use (default: 4)')
    group.add_argument('--pin-mem', action='store_true', default=False,
                       help='Pin CPU memory in DataLoader for more efficient (sometimes) transfer to GPU.')
    group.add_argument('--no-prefetcher', action='store_true', default=False, help='disable fast prefetcher')
    group.add_argument('--output', default='', type=str, metavar='PATH',
                       help='path to output folder (default: none, current dir)')
    group.add_argument('--experiment', default='', type=str, metavar='NAME',
                       help='name of train experiment, name of sub-folder for output')
    group.add_argument('--eval-metric', default='top1', type=str, metavar='EVAL_METRIC',
                       help='Best metric (default: "top1"')
    group.add_argument('--log-wandb', action='store_true', default=False,
                       help='log training and validation metrics to wandb')
    group.add_argument('--wandb-project', default=None, type=str, help='wandb project name')
    group.add_argument('--wandb-tags', default=[], type=str, nargs='+', help='wandb tags')
    group.add_argument('--debug', action='store_true', default=False,
                       help='show tracebacks for input errors (default: one-line message, exit code 2)')

    # SynerMix
    group = parser.add_argument_group('SynerMix parameters')
    group.add_argument('--method', default=None, type=str, metavar='NAME',
                       help='paper method preset: baseline, mixup, manifold-mixup, synermix-intra, synermix-intra-aug, '
                            'synermix, synermix-manifold (sets --synermix, --synermix-source, --mixup 1.0 if unset, '
                            '--manifold-mixup)')
    group.add_argument('--synermix', action='store_true', default=False,
                       help='SynerMix-Intra term: supplemented batches, two views, L = b*L_intra + (1-b)*L_inter')
    group.add_argument('--synermix-beta', type=float, default=None, metavar='BETA',
                       help='beta weighing L_intra (default: 0.1 with an inter-class mixup, 0.5 for the intra term '
                            'alone, 0 without --synermix)')
    group.add_argument('--synermix-source', type=str, default='original', choices=('original', 'augmented'),
                       help='features mixed by the intra term: unaugmented originals (SynerMix) or augmented (w-RA(aug))')
    group.add_argument('--synermix-num-synth', type=int, default=1, metavar='P',
                       help='synthesized features per class and batch (default: 1)')
    group.add_argument('--synermix-every', type=int, default=1, metavar='K',
                       help='cheap mode: compute the intra term every K-th step only (default: 1)')
    group.add_argument('--synermix-orig-scale', type=float, default=1.0, metavar='S',
                       help='cheap mode: resize the originals by S before their pass (default: 1.0)')
    group.add_argument('--allow-singleton-classes', action='store_true', default=False,
                       help='let classes with one training image train with one sample instead of failing')
    group.add_argument('--manifold-mixup', action='store_true', default=False,
                       help='inter component is Manifold MixUp (alpha: --mixup, default 1.0)')
    group.add_argument('--manifold-layers', type=str, nargs='+', default=None, metavar='NAME',
                       help='module names (and/or "input") to mix at (default: the paper\'s set for ResNet, '
                            'MobileNetV3, Swin)')
    group.add_argument('--report-last-k', type=int, default=10, metavar='K',
                       help='results.json reports the mean/std eval top-1 of the last K epochs (default: 10)')
    group.add_argument('--val-holdout', type=float, default=None, metavar='FRACTION',
                       help='evaluate on a stratified, seeded FRACTION of the training split instead of --val-split '
                            '(the paper\'s protocol for choosing beta: 0.1)')
    group.add_argument('--cifar-stem', action='store_true', default=False,
                       help='ResNet CIFAR stem: 3x3 stride-1 conv1, no max-pool (for 32 px inputs)')
    group.add_argument('--no-feature-metrics', action='store_true', default=False,
                       help='skip the feature-space metrics in results.json (features.npz is still written)')
    return config_parser, parser


def parse_args(argv=None):
    config_parser, parser = _build_parsers()
    args_config, remaining = config_parser.parse_known_args(argv)
    if args_config.config:
        parser.set_defaults(**load_config(args_config.config, parser_dests(parser)))
    args = parser.parse_args(remaining)
    args.config = args_config.config
    args.debug = args.debug or args_config.debug
    return args, parser


# ----------------------------------------------------------------------------------------------------------------
# Model and data
# ----------------------------------------------------------------------------------------------------------------

def _first_line(exc, prefer=('size mismatch', 'Missing key', 'Unexpected key')):
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(prefer):
            return line[:240]
    return (lines[0] if lines else type(exc).__name__)[:240]


def create_model_from_args(args, num_classes):
    in_chans = args.in_chans if args.in_chans is not None else (args.input_size[0] if args.input_size else 3)
    kwargs = dict(
        in_chans=in_chans, drop_rate=args.drop, drop_path_rate=args.drop_path, drop_block_rate=args.drop_block,
        global_pool=args.gp, bn_momentum=args.bn_momentum, bn_eps=args.bn_eps, **args.model_kwargs)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return create_train_model(
        args.model, num_classes=num_classes, pretrained=args.pretrained, pretrained_path=args.pretrained_path,
        cifar_stem=args.cifar_stem, initial_checkpoint=args.initial_checkpoint, **kwargs)


def _is_folder_dataset(name):
    return not name or name.lower().startswith(('folder/', 'imagefolder/', 'tar/'))


def create_datasets(args):
    from timm.data import create_dataset
    if args.data:  # the positional DIR, given on the command line, beats a config file's data_dir
        args.data_dir = args.data
    if _is_folder_dataset(args.dataset):
        if not args.data_dir:
            raise UserError('no dataset given: pass the ImageFolder root as DIR (or --data-dir), or --dataset torch/<name>')
        if not os.path.exists(args.data_dir):
            raise UserError(f'data dir {args.data_dir!r} does not exist: pass the ImageFolder root (with '
                            f'{args.train_split}/ and {args.val_split or "validation"}/ class folders) as DIR')
        if os.path.isdir(args.data_dir) and not os.listdir(args.data_dir):
            raise UserError(f'data dir {args.data_dir!r} is empty: put the images in {args.train_split}/<class>/ '
                            f'(and {args.val_split or "validation"}/<class>/) under it, or pass another DIR')
    elif args.dataset.lower().startswith('torch/') and not args.data_dir:
        args.data_dir = os.path.join('data', args.dataset.split('/', 1)[1])
    input_img_mode = args.input_img_mode or 'RGB'
    common = dict(class_map=args.class_map, download=args.dataset_download, batch_size=args.batch_size,
                  input_img_mode=input_img_mode)

    def make(split, is_training):
        try:
            dataset = create_dataset(args.dataset, root=args.data_dir, split=split, is_training=is_training,
                                     seed=args.seed, **common)
        except (RuntimeError, FileNotFoundError, AssertionError, ValueError) as e:
            hint = ' (add --dataset-download to fetch it)' if args.dataset.startswith('torch/') and \
                not args.dataset_download else ''
            raise UserError(f'cannot load {split!r} split of {args.dataset or "ImageFolder"} at {args.data_dir!r}: '
                            f'{str(e).splitlines()[0] if str(e) else type(e).__name__}{hint}')
        if len(dataset) == 0:
            raise UserError(f'the {split!r} split at {args.data_dir!r} has no images: put them in '
                            f'{split}/<class>/ folders, or pass another DIR')
        return dataset

    if _is_folder_dataset(args.dataset) and args.val_split and not args.val_holdout and os.path.isdir(args.data_dir):
        from timm.data.dataset_factory import _search_split
        if os.path.abspath(_search_split(args.data_dir, args.val_split)) == os.path.abspath(args.data_dir):
            raise UserError(f'no {args.val_split!r} folder under {args.data_dir!r}: add one, pass --val-split NAME, '
                            f'--val-holdout 0.1 to hold out part of the training set, or --val-split "" for no eval')
    dataset_train = make(args.train_split, True)
    dataset_eval = None
    if args.val_holdout:
        if not 0.0 < args.val_holdout < 1.0:
            raise UserError(f'--val-holdout {args.val_holdout} must be a fraction in (0, 1), e.g. 0.1')
        dataset_train, dataset_eval = holdout_split(
            dataset_train, make(args.train_split, False), args.val_holdout, seed=args.seed)
    elif args.val_split:
        dataset_eval = make(args.val_split, False)
    return dataset_train, dataset_eval


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------

def _is_primary(args):
    return args.rank == 0


def _reduce(value, args, device):
    if not args.distributed:
        return float(value)
    t = torch.tensor([float(value)], device=device, dtype=torch.float64 if device.type == 'cpu' else torch.float32)
    torch.distributed.all_reduce(t)
    return float(t.item()) / args.world_size


def _to_device(x, device):
    from timm_synermix import TwoViews
    if isinstance(x, TwoViews):
        return TwoViews(*(v.to(device=device, non_blocking=True) for v in x))
    return x.to(device=device, non_blocking=True)


def _channels_last(x):
    from timm_synermix import TwoViews
    if isinstance(x, TwoViews):
        return TwoViews(*(v.contiguous(memory_format=torch.channels_last) for v in x))
    return x.contiguous(memory_format=torch.channels_last)


def _batch_len(x):
    return x.augmented.shape[0] if hasattr(x, 'augmented') else x.shape[0]


def _scalar(value):
    if value is None:
        return 0.0
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


class _Meter:
    def __init__(self, state=None):
        self.sum, self.count, self.val = (state or {}).get('sum', 0.0), (state or {}).get('count', 0), 0.0

    def update(self, val, n=1):
        self.val = val
        self.sum += val * n
        self.count += n

    @property
    def avg(self):
        return self.sum / max(self.count, 1)

    def state_dict(self):
        return {'sum': self.sum, 'count': self.count}


def train_one_epoch(epoch, task, loader, sampler, optimizer, args, device, lr_scheduler, saver, amp_autocast,
                    loss_scaler, progress, start_batch=0, meters_state=None, rng_state=None):
    from timm import utils
    if args.mixup_off_epoch and epoch >= args.mixup_off_epoch and task.mixup is not None:
        task.mixup.mixup_enabled = False

    meters = {k: _Meter((meters_state or {}).get(k)) for k in ('loss', 'loss_intra', 'loss_inter', 'batch')}
    update_time_m = _Meter()
    data_time_m = _Meter()
    task.train()
    task.get_trainable_module().train()

    accum = args.grad_accum_steps
    num_batches = start_batch + len(loader)  # batches of the whole epoch
    last_accum_steps = num_batches % accum
    updates_per_epoch = (num_batches + accum - 1) // accum
    num_updates = epoch * updates_per_epoch + start_batch // accum
    last_batch_idx = num_batches - 1
    last_batch_idx_to_accum = num_batches - last_accum_steps
    has_no_sync = args.distributed

    data_start_time = update_start_time = time.time()
    optimizer.zero_grad()
    update_sample_count = 0
    iterator = iter(loader)
    if rng_state is not None:
        # mid-epoch resume: RNG as it was after the last trained batch, the loader's seed draw already made
        set_rng_state(rng_state)
    for i, (input, target) in enumerate(iterator):
        batch_idx = start_batch + i
        last_batch = batch_idx == last_batch_idx
        need_update = last_batch or (batch_idx + 1) % accum == 0
        update_idx = batch_idx // accum
        accum_steps = last_accum_steps if batch_idx >= last_batch_idx_to_accum else accum
        if not args.prefetcher:
            input, target = _to_device(input, device), target.to(device=device)
        if args.channels_last:
            input = _channels_last(input)
        data_time_m.update(accum_steps * (time.time() - data_start_time))
        n_batch = _batch_len(input)

        def _forward():
            with amp_autocast():
                result = task(input, target)
            loss = result['loss']
            if accum_steps > 1:
                loss = loss / accum_steps
            return loss, result

        def _backward(loss):
            clip_parameters = None
            if args.clip_grad is not None:
                clip_parameters = task.get_clip_parameters(exclude_head='agc' in args.clip_mode)
            if loss_scaler is not None:
                loss_scaler(loss, optimizer, clip_grad=args.clip_grad, clip_mode=args.clip_mode,
                            parameters=clip_parameters, need_update=need_update)
            else:
                loss.backward()
                if need_update:
                    if args.clip_grad is not None:
                        utils.dispatch_clip_grad(clip_parameters, value=args.clip_grad, mode=args.clip_mode)
                    optimizer.step()

        def _check_finite(loss):
            value = loss.item()
            if not math.isfinite(value):
                last = os.path.join(saver.checkpoint_dir, 'last.pth.tar') if saver is not None else ''
                keep = f'the last good checkpoint, {last!r}, is kept' if os.path.isfile(last) else \
                    'no checkpoint was written yet'
                raise UserError(f'loss is {value} at epoch {epoch}, step {batch_idx} (update {update_idx}); training '
                                f'stopped and {keep}: lower --lr or set --clip-grad, then --resume')
            return value

        if has_no_sync and not need_update:
            with task.no_sync():
                loss, result = _forward()
                loss_value = _check_finite(loss)
                _backward(loss)
        else:
            loss, result = _forward()
            loss_value = _check_finite(loss)
            _backward(loss)

        meters['loss'].update(loss_value * accum_steps, n_batch)
        if args.synermix_beta > 0 and (getattr(task, 'step', 1) - 1) % args.synermix_every == 0:
            meters['loss_intra'].update(_scalar(result.get('loss_intra')), n_batch)  # steps that computed it
        inter = result.get('loss_inter')
        meters['loss_inter'].update(_scalar(inter if inter is not None else result['loss']), n_batch)
        meters['batch'].update(n_batch)
        update_sample_count += n_batch * args.world_size  # supplemented size, what the step really processed

        if not need_update:
            data_start_time = time.time()
            continue

        num_updates += 1
        optimizer.zero_grad()
        task.update_ema(step=num_updates)
        if args.synchronize_step and device.type == 'cuda':
            torch.cuda.synchronize()
        time_now = time.time()
        update_time_m.update(time_now - update_start_time)
        update_start_time = time_now

        if update_idx % args.log_interval == 0 or last_batch:
            lrl = [g['lr'] for g in optimizer.param_groups]
            lr = sum(lrl) / len(lrl)
            loss_now = _reduce(meters['loss'].val, args, device)
            loss_avg = _reduce(meters['loss'].avg, args, device)
            intra_avg = _reduce(meters['loss_intra'].avg, args, device)
            inter_avg = _reduce(meters['loss_inter'].avg, args, device)
            if _is_primary(args):
                _logger.info(
                    f'Train: {epoch} [{update_idx:>4d}/{updates_per_epoch} '
                    f'({100. * (update_idx + 1) / updates_per_epoch:>3.0f}%)]  '
                    f'Loss: {loss_now:#.3g} ({loss_avg:#.3g})  '
                    f'Intra: {meters["loss_intra"].val:#.3g} ({intra_avg:#.3g})  '
                    f'Inter: {meters["loss_inter"].val:#.3g} ({inter_avg:#.3g})  '
                    f'Batch: {n_batch} ({meters["batch"].avg:.1f})  '
                    f'Time: {update_time_m.val:.3f}s, {update_sample_count / max(update_time_m.val, 1e-9):>7.2f}/s  '
                    f'({update_time_m.avg:.3f}s, {update_sample_count / max(update_time_m.avg, 1e-9):>7.2f}/s)  '
                    f'LR: {lr:.3e}  '
                    f'Data: {data_time_m.val:.3f} ({data_time_m.avg:.3f})')

        if args.recovery_interval and (update_idx + 1) % args.recovery_interval == 0 and not last_batch:
            progress.update(epoch=epoch, next_batch=batch_idx + 1, num_updates=num_updates,
                            meters={k: m.state_dict() for k, m in meters.items()})
            if args.distributed:
                progress['rng_all'] = _gather_rng(args)
            if saver is not None:
                saver.save_recovery(epoch, batch_idx=update_idx)
            progress.update(next_batch=None, meters=None, rng_all=None)

        if lr_scheduler is not None:
            lr_scheduler.step_update(num_updates=num_updates, metric=meters['loss'].avg)

        update_sample_count = 0
        data_start_time = time.time()

    if hasattr(optimizer, 'sync_lookahead'):
        optimizer.sync_lookahead()
    return OrderedDict([
        ('loss', _reduce(meters['loss'].avg, args, device)),
        ('loss_intra', _reduce(meters['loss_intra'].avg, args, device)),
        ('loss_inter', _reduce(meters['loss_inter'].avg, args, device)),
    ])


def validate(model, loader, args, device, amp_autocast=suppress, log_suffix=''):
    from timm import utils
    loss_fn = nn.CrossEntropyLoss().to(device)
    losses_m, top1_m, top5_m = _Meter(), _Meter(), _Meter()
    model.eval()
    last_idx = len(loader) - 1
    with torch.inference_mode():
        for batch_idx, (input, target) in enumerate(loader):
            if not args.prefetcher:
                input, target = input.to(device), target.to(device)
            if args.channels_last:
                input = input.contiguous(memory_format=torch.channels_last)
            with amp_autocast():
                output = model(input)
                if isinstance(output, (tuple, list)):
                    output = output[0]
                loss = loss_fn(output, target)
            acc1, acc5 = utils.accuracy(output, target, topk=(1, 5))
            if args.distributed:
                loss = utils.reduce_tensor(loss.data, args.world_size)
                acc1 = utils.reduce_tensor(acc1, args.world_size)
                acc5 = utils.reduce_tensor(acc5, args.world_size)
            n = output.shape[0]
            losses_m.update(loss.item(), n)
            top1_m.update(acc1.item(), n)
            top5_m.update(acc5.item(), n)
            if _is_primary(args) and (batch_idx == last_idx or batch_idx % args.log_interval == 0):
                _logger.info(f'Test{log_suffix}: [{batch_idx:>4d}/{last_idx}]  '
                             f'Loss: {losses_m.val:>7.3f} ({losses_m.avg:>6.3f})  '
                             f'Acc@1: {top1_m.val:>7.3f} ({top1_m.avg:>7.3f})  '
                             f'Acc@5: {top5_m.val:>7.3f} ({top5_m.avg:>7.3f})')
    return OrderedDict([('loss', losses_m.avg), ('top1', top1_m.avg), ('top5', top5_m.avg)])


def _gather_rng(args):
    states = [None] * args.world_size
    torch.distributed.all_gather_object(states, to_weights_only(get_rng_state()))
    return states


def init_distributed_device(args):
    """timm's init_distributed_device, with a timeout on every collective: when a rank dies, the others fail
    within --dist-timeout seconds instead of hanging (NCCL: with async error handling, torch's default)."""
    from timm.utils.distributed import is_distributed_env, world_info_from_env
    device_type, *device_idx = args.device.split(':', maxsplit=1)
    args.distributed, args.world_size, args.rank, args.local_rank = False, 1, 0, 0
    if is_distributed_env():
        args.local_rank, args.rank, args.world_size = world_info_from_env()
        backend = {'xpu': 'ccl', 'hpu': 'hccl', 'cuda': 'nccl', 'npu': 'hccl'}.get(device_type, 'gloo')
        os.environ.update(LOCAL_RANK=str(args.local_rank), RANK=str(args.rank), WORLD_SIZE=str(args.world_size))
        torch.distributed.init_process_group(
            backend=backend, init_method='env://', world_size=args.world_size, rank=args.rank,
            timeout=timedelta(seconds=args.dist_timeout))
        args.distributed = True
        if device_type != 'cpu':
            args.device = f'{device_type}:{args.local_rank}'
    if args.device.startswith('cuda:'):
        torch.cuda.set_device(args.device)
    return torch.device(args.device)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = '--debug' in argv
    try:
        return _main(argv)
    except UserError as e:
        if debug:
            raise
        print(f'{PROG}: error: {e}', file=sys.stderr)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        sys.exit(2)


def _main(argv):
    from timm import utils
    from timm.models import safe_model_name
    from timm.optim import create_optimizer_v2, optimizer_kwargs
    from timm.scheduler import create_scheduler_v2, scheduler_kwargs
    from timm.data import create_loader, resolve_data_config
    from timm.layers import convert_sync_batchnorm
    from timm.task import resume_task_checkpoint, load_task_ema_checkpoint
    import timm_synermix as tsm

    utils.setup_default_logging()
    args, parser = parse_args(argv)
    apply_method(args)
    args_text = args_to_yaml(args, parser_dests(parser))

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    args.prefetcher = not args.no_prefetcher
    args.grad_accum_steps = max(1, args.grad_accum_steps)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise UserError(f'--device {args.device} but CUDA is not available: pass --device cpu')
    device = init_distributed_device(args)
    if args.distributed:
        _logger.info(f'Training in distributed mode with multiple processes, 1 device per process. '
                     f'Process {args.rank}, total {args.world_size}, device {args.device}.')
    else:
        _logger.info(f'Training with a single process on 1 device ({args.device}).')
    if args.sync_bn and args.distributed and device.type == 'cpu':
        raise UserError('--sync-bn needs a GPU (torch SyncBatchNorm has no CPU kernel): drop --sync-bn on CPU')

    amp_dtype = torch.float16
    if args.amp:
        if args.amp_dtype not in ('float16', 'bfloat16'):
            raise UserError(f'--amp-dtype {args.amp_dtype}: use float16 or bfloat16')
        amp_dtype = torch.bfloat16 if args.amp_dtype == 'bfloat16' else torch.float16

    # Output folder: an existing experiment is never overwritten without --resume.
    exp_name = args.experiment or '-'.join([
        datetime.now().strftime('%Y%m%d-%H%M%S'), safe_model_name(args.model),
        str(args.input_size[-1] if args.input_size else (args.img_size or 'default'))])
    output_dir = os.path.join(args.output if args.output else './output/train', exp_name)
    resume_ckpt = load_training_checkpoint(args.resume) if args.resume else None
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not args.resume:
        raise UserError(f'experiment folder {output_dir!r} exists: pass --resume '
                        f'{os.path.join(output_dir, "last.pth.tar")} to continue it, or another --experiment')
    if args.distributed:
        torch.distributed.barrier()

    utils.random_seed(args.seed, args.rank)

    # Data first: the class count of the training set sizes the head when --num-classes is not given.
    dataset_train, dataset_eval = create_datasets(args)
    labels = tsm.dataset_labels(dataset_train)
    class_names = _class_names(dataset_train)
    data_classes = len(class_names) if class_names else int(labels.max()) + 1
    if args.num_classes is None:
        args.num_classes = data_classes
        _logger.info(f'--num-classes not given: {args.num_classes} from the training set.')
    elif args.num_classes > data_classes:
        raise UserError(f'--num-classes {args.num_classes} disagrees with the data ({data_classes} classes in the '
                        f'training set): drop --num-classes to size the head from the data, or fix the class map')

    model = create_model_from_args(args, args.num_classes)
    if args.grad_checkpointing:
        model.set_grad_checkpointing(enable=True)
    if _is_primary(args):
        _logger.info(f'Model {safe_model_name(args.model)} created, param count:'
                     f'{sum(m.numel() for m in model.parameters())}')
    data_config = resolve_data_config(vars(args), model=model, verbose=_is_primary(args))
    model.to(device=device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    if args.distributed and args.sync_bn:
        args.dist_bn = ''
        model = convert_sync_batchnorm(model)

    amp_autocast = suppress
    loss_scaler = None
    if args.amp:
        amp_autocast = partial(torch.autocast, device_type=device.type, dtype=amp_dtype)
        if device.type == 'cuda' and amp_dtype == torch.float16:
            loss_scaler = utils.NativeScaler(device=device.type)

    # Inter component, task.
    mix = None
    mixup_args = dict(mixup_alpha=args.mixup, prob=args.mixup_prob, mode=args.mixup_mode,
                      label_smoothing=args.smoothing, num_classes=args.num_classes)
    try:
        if args.manifold_mixup:
            mix = tsm.ManifoldMixup(model, layers=args.manifold_layers, **mixup_args)
        elif args.mixup > 0 or args.cutmix > 0 or args.cutmix_minmax is not None:
            mix = tsm.Mixup(cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                            switch_prob=args.mixup_switch_prob, **mixup_args)
        task = tsm.SynerMixTask(
            model, beta=args.synermix_beta, mixup=mix, source=args.synermix_source,
            num_per_class=args.synermix_num_synth, intra_every=args.synermix_every,
            original_scale=args.synermix_orig_scale,
            criterion_kwargs=None if mix is not None else dict(smoothing=args.smoothing),
            device=device, verbose=_is_primary(args))
    except ValueError as e:
        raise UserError(str(e))

    # Training loader: supplementing batch sampler, two views for the originals-sourced intra term.
    intra = args.synermix and args.synermix_beta > 0
    two_views = intra and args.synermix_source == 'original'
    try:
        sampler = tsm.SupplementedBatchSampler(
            labels, batch_size=args.batch_size, drop_last=True, shuffle=True, seed=args.seed,
            supplement=args.synermix, allow_singleton_classes=args.allow_singleton_classes,
            num_classes=args.num_classes, class_names=class_names)
    except ValueError as e:
        raise UserError(str(e))
    train_interpolation = args.train_interpolation
    if args.no_aug or not train_interpolation:
        train_interpolation = data_config['interpolation']
    loader_train = tsm.create_synermix_loader(
        dataset_train, input_size=data_config['input_size'], batch_sampler=sampler, two_views=two_views,
        original_transform=tsm.create_original_transform(data_config, use_prefetcher=args.prefetcher)
        if two_views else None,
        is_training=True, use_prefetcher=args.prefetcher, device=device, num_workers=args.workers,
        pin_memory=args.pin_mem, persistent_workers=False, worker_seeding=args.worker_seeding,
        mean=data_config['mean'], std=data_config['std'], re_prob=args.reprob, re_mode=args.remode,
        re_count=args.recount, interpolation=train_interpolation, crop_pct=data_config['crop_pct'],
        no_aug=args.no_aug, train_crop_mode=args.train_crop_mode, scale=args.scale, ratio=args.ratio,
        hflip=args.hflip, vflip=args.vflip, color_jitter=args.color_jitter, color_jitter_prob=args.color_jitter_prob,
        grayscale_prob=args.grayscale_prob or 0., gaussian_blur_prob=args.gaussian_blur_prob or 0.,
        auto_augment=args.aa)
    if args.lr is None:
        global_batch_size = args.batch_size * args.world_size * args.grad_accum_steps
        batch_ratio = global_batch_size / args.lr_base_size
        if not args.lr_base_scale:
            on = args.opt.lower()
            args.lr_base_scale = 'sqrt' if any(o in on for o in ('ada', 'lamb')) else 'linear'
        if args.lr_base_scale == 'sqrt':
            batch_ratio = batch_ratio ** 0.5
        args.lr = args.lr_base * batch_ratio
        if _is_primary(args):
            _logger.info(f'Learning rate ({args.lr}) calculated from base learning rate ({args.lr_base}) and '
                         f'effective global batch size ({global_batch_size}) with {args.lr_base_scale} scaling.')
    optimizer = create_optimizer_v2(model, **optimizer_kwargs(cfg=args), **args.opt_kwargs)

    loader_eval = None
    if dataset_eval is not None:
        loader_eval = create_loader(
            dataset_eval, input_size=data_config['input_size'],
            batch_size=args.validation_batch_size or args.batch_size, is_training=False,
            interpolation=data_config['interpolation'], mean=data_config['mean'], std=data_config['std'],
            num_workers=args.workers, distributed=args.distributed, crop_pct=data_config['crop_pct'],
            pin_memory=args.pin_mem, device=device, use_prefetcher=args.prefetcher)

    # Resume: model, optimizer, AMP scaler, task step (timm), then EMA, scheduler, sampler, RNG, history.
    resume_epoch = None
    resume_state = {}
    if args.resume:
        try:
            resume_epoch = resume_task_checkpoint(
                task, args.resume, optimizer=None if args.no_resume_opt else optimizer,
                loss_scaler=None if args.no_resume_opt else loss_scaler, log_info=_is_primary(args))
        except RuntimeError as e:
            raise UserError(f'--resume {args.resume!r} does not fit this run ({_first_line(e)}): '
                            f'use the same --model/--num-classes as the checkpoint')
        resume_state = resume_ckpt.get('synermix') or {}
        saver_state = resume_ckpt.get('saver')
        resume_ckpt = None  # free the tensors before training
        if resume_state.get('next_batch') is not None:
            resume_epoch = resume_state['epoch']  # recovery checkpoint: finish the interrupted epoch

    if args.model_ema:
        task.setup_ema(decay=args.model_ema_decay, use_warmup=args.model_ema_warmup,
                       device='cpu' if args.model_ema_force_cpu else None)
        if args.resume:
            load_task_ema_checkpoint(task, args.resume)

    if args.torchcompile:
        task.compile(backend=args.torchcompile, mode=args.torchcompile_mode)
        if task.has_ema():
            task.compile_ema(backend=args.torchcompile, mode=args.torchcompile_mode)

    if args.distributed:
        task.prepare_distributed(device_ids=[device] if device.type == 'cuda' else None,
                                 broadcast_buffers=not args.no_ddp_bb)

    # Scheduler.
    eval_metric = args.eval_metric if loader_eval is not None else 'loss'
    decreasing_metric = eval_metric == 'loss'
    updates_per_epoch = (sampler.num_batches + args.grad_accum_steps - 1) // args.grad_accum_steps
    lr_scheduler, num_epochs = create_scheduler_v2(
        optimizer, **scheduler_kwargs(args, decreasing_metric=decreasing_metric), updates_per_epoch=updates_per_epoch)
    start_epoch = 0
    if args.start_epoch is not None:
        start_epoch = args.start_epoch
    elif resume_epoch is not None:
        start_epoch = resume_epoch
    if lr_scheduler is not None and resume_state.get('scheduler') is not None and not args.no_resume_opt:
        lr_scheduler.load_state_dict(resume_state['scheduler'])
    if lr_scheduler is not None and start_epoch > 0:
        if args.sched_on_updates:
            lr_scheduler.step_update(start_epoch * updates_per_epoch)
        else:
            lr_scheduler.step(start_epoch)
    start_batch = resume_state.get('next_batch') or 0
    if resume_state.get('sampler'):  # the batch order continues the checkpoint's, whatever --seed says now
        sampler.seed = int(resume_state['sampler']['seed'])
    resume_rng = None
    if resume_state.get('rng_all') and len(resume_state['rng_all']) == args.world_size:
        resume_rng = resume_state['rng_all'][args.rank]
        if not start_batch:
            set_rng_state(resume_rng)
            resume_rng = None
    elif resume_state.get('rng_all'):
        _logger.warning('RNG state not restored: the world size changed since the checkpoint.')

    # Outputs, checkpoint saver (rank 0).
    history = list(resume_state.get('history') or [])
    history = [row for row in history if row['epoch'] < start_epoch]
    progress = {'epoch': start_epoch, 'next_batch': None, 'num_updates': 0, 'meters': None, 'rng_all': None}

    def extra_state():
        return {
            'history': history,
            'scheduler': lr_scheduler.state_dict() if lr_scheduler is not None else None,
            'sampler': sampler.state_dict(),
            'epoch': progress['epoch'], 'next_batch': progress['next_batch'],
            'num_updates': progress['num_updates'], 'meters': progress['meters'],
            'rng_all': progress['rng_all'] or [get_rng_state()],
            'method': args.method,
        }

    saver = None
    if _is_primary(args):
        os.makedirs(output_dir, exist_ok=True)
        saver = AtomicCheckpointSaver(
            model=model, optimizer=optimizer, args=args, amp_scaler=loss_scaler, checkpoint_dir=output_dir,
            recovery_dir=output_dir, decreasing=decreasing_metric, max_history=args.checkpoint_hist, task=task,
            extra_state_fn=extra_state)
        if args.resume and saver_state and os.path.abspath(os.path.dirname(args.resume)) == os.path.abspath(output_dir):
            saver.load_state_dict(saver_state)
        if not args.resume:  # a resumed run rewrites args.yaml with its first checkpoint, not before
            atomic_write(os.path.join(output_dir, 'args.yaml'), lambda f: f.write(args_text), mode='w')
        if args.log_wandb:
            try:
                import wandb
                wandb.init(project=args.wandb_project, name=exp_name, config=args, tags=args.wandb_tags)
            except ImportError:
                _logger.warning("You've requested to log metrics to wandb but package not found.")
                args.log_wandb = False
        _logger.info(f'Method {args.method}: synermix={args.synermix} beta={args.synermix_beta} '
                     f'source={args.synermix_source} inter={type(mix).__name__ if mix else None} '
                     f'supplemented batches={args.synermix} two views={two_views}')
        _logger.info(f'Scheduled epochs: {num_epochs}. LR stepped per '
                     f'{"epoch" if lr_scheduler.t_in_epochs else "update"}.')

    best_metric, best_epoch = (saver.best_metric, saver.best_epoch) if saver is not None else (None, None)
    try:
        for epoch in range(start_epoch, num_epochs):
            sampler.set_epoch(epoch, start_batch=start_batch if epoch == start_epoch else 0)
            train_metrics = train_one_epoch(
                epoch, task, loader_train, sampler, optimizer, args, device, lr_scheduler, saver, amp_autocast,
                loss_scaler, progress, start_batch=start_batch if epoch == start_epoch else 0,
                meters_state=resume_state.get('meters') if epoch == start_epoch else None,
                rng_state=resume_rng if epoch == start_epoch else None)
            sampler.set_epoch(epoch + 1)

            if args.distributed and args.dist_bn in ('broadcast', 'reduce'):
                utils.distribute_bn(model, args.world_size, args.dist_bn == 'reduce')

            eval_metrics = None
            if loader_eval is not None:
                eval_metrics = validate(task.get_eval_model(), loader_eval, args, device, amp_autocast)
                ema_model = task.get_trainable_module(ema=True)
                if ema_model is not None and not args.model_ema_force_cpu:
                    if args.distributed and args.dist_bn in ('broadcast', 'reduce'):
                        utils.distribute_bn(ema_model, args.world_size, args.dist_bn == 'reduce')
                    eval_metrics = validate(task.get_eval_model(ema=True), loader_eval, args, device, amp_autocast,
                                            log_suffix=' (EMA)')

            lrs = [g['lr'] for g in optimizer.param_groups]
            row = OrderedDict(epoch=epoch)
            row.update(('train_' + k, v) for k, v in train_metrics.items())
            row.update(('eval_' + k, (eval_metrics or {}).get(k)) for k in ('loss', 'top1', 'top5'))
            row['lr'] = sum(lrs) / len(lrs)
            history.append(dict(row))
            latest_metric = eval_metrics[eval_metric] if eval_metrics is not None else train_metrics[eval_metric]

            if lr_scheduler is not None:
                lr_scheduler.step(epoch + 1, latest_metric)
            progress.update(epoch=epoch, next_batch=None, meters=None,
                            num_updates=(epoch + 1) * updates_per_epoch)
            progress['rng_all'] = _gather_rng(args) if args.distributed else None
            if saver is not None:
                if args.resume and epoch == start_epoch:
                    atomic_write(os.path.join(output_dir, 'args.yaml'), lambda f: f.write(args_text), mode='w')
                write_summary(os.path.join(output_dir, 'summary.csv'), history)
                if args.log_wandb:
                    import wandb
                    wandb.log(dict(row))
                best_metric, best_epoch = saver.save_checkpoint(epoch, metric=latest_metric)
            start_batch = 0
    except KeyboardInterrupt:
        pass

    if args.distributed:
        torch.distributed.barrier()
    if best_metric is not None:
        _logger.info(f'*** Best metric: {best_metric} (epoch {best_epoch})')

    if _is_primary(args):
        _finish(args, task, dataset_eval, data_config, device, output_dir, history, loader_eval)
    if args.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


def _class_names(dataset):
    reader = getattr(getattr(dataset, 'dataset', dataset), 'reader', None)
    class_to_idx = getattr(reader, 'class_to_idx', None) or getattr(getattr(dataset, 'dataset', dataset),
                                                                   'class_to_idx', None)
    if not class_to_idx:
        return None
    names = [None] * (max(class_to_idx.values()) + 1)
    for name, idx in class_to_idx.items():
        names[idx] = str(name)
    return names


def _finish(args, task, dataset_eval, data_config, device, output_dir, history, loader_eval):
    """results.json, features.npz (eval set's pre-logit features) and model_best.safetensors."""
    from timm.data import create_loader
    results = summarize_results(history, args.method, args.report_last_k)
    metrics = None
    if dataset_eval is not None:
        from timm_synermix.metrics import extract_features, compute_feature_metrics
        loader = loader_eval
        if args.distributed:  # the distributed eval loader pads and shards: a full, ordered pass on rank 0
            loader = create_loader(
                dataset_eval, input_size=data_config['input_size'],
                batch_size=args.validation_batch_size or args.batch_size, is_training=False,
                interpolation=data_config['interpolation'], mean=data_config['mean'], std=data_config['std'],
                num_workers=args.workers, distributed=False, crop_pct=data_config['crop_pct'],
                device=device, use_prefetcher=args.prefetcher)
        from timm.utils.model import unwrap_model
        eval_model = unwrap_model(task.get_trainable_module(ema=True) or task.get_trainable_module())
        eval_model = getattr(eval_model, 'module', eval_model)  # ModelEmaV3 keeps the copy in .module
        features, labels, logits = extract_features(eval_model, loader, device=device)
        atomic_write(os.path.join(output_dir, 'features.npz'),
                     lambda f: np.savez(f, features=features.astype(np.float32), labels=labels.astype(np.int64)))
        if not args.no_feature_metrics:
            try:
                metrics = compute_feature_metrics(features, labels, logits.argmax(1))
            except ValueError as e:  # e.g. too few eval images for a silhouette: the trained run still counts
                _logger.warning(f'Feature metrics skipped: {e}')
    results['metrics'] = to_weights_only(metrics) if metrics is not None else {}
    atomic_write(os.path.join(output_dir, 'results.json'),
                 lambda f: f.write(json.dumps(results, indent=2, default=float)), mode='w')
    best = os.path.join(output_dir, 'model_best.pth.tar')
    if not os.path.exists(best):
        best = os.path.join(output_dir, 'last.pth.tar')
    if os.path.exists(best):
        export_safetensors(best, os.path.join(output_dir, 'model_best.safetensors'), metadata=dict(
            arch=args.model, num_classes=args.num_classes, cifar_stem=int(args.cifar_stem), method=args.method))
    _logger.info(f'Results: {json.dumps({k: v for k, v in results.items() if k != "metrics"})}')


if __name__ == '__main__':
    main()
