"""train.py's command line: timm's flags (names, defaults, meanings), then SynerMix's.

The library's parameter names map to these flags in one place, `errors.PARAM_FLAGS`: the method speaks in its own
terms (`beta=1.5`), and `errors.to_flags` rewrites its messages for the command line.
"""
import argparse

import yaml

from .config import load_config, parser_dests
from .errors import InputError, to_flags
from .validation import check_config_types

__all__ = ['PROG', 'BATCH_COMPOSITIONS', 'build_parsers', 'parse_args', 'given_options', 'option_defaults']

PROG = 'train.py'
BATCH_COMPOSITIONS = ('plain', 'supplemented', 'fixed', 'paired', 'paired-distinct')



class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise InputError(message)


class _ParseKwargs(argparse.Action):
    """key=value pairs (as timm's ParseKwargs), values parsed as YAML scalars."""

    def __call__(self, parser, namespace, values, option_string=None):
        kw = {}
        for value in values:
            key, _, val = value.partition('=')
            kw[key] = yaml.safe_load(val) if val else val
        setattr(namespace, self.dest, kw)


def _add_dataset_args(parser):
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

def _add_model_args(parser):
    # Model parameters
    group = parser.add_argument_group('Model parameters')
    group.add_argument('--model', default='resnet50', type=str, metavar='MODEL',
                       help='Name of model to train (default: "resnet50")')
    group.add_argument('--pretrained', action=argparse.BooleanOptionalAction, default=False,
                       help='Start with pretrained version of specified network (if avail); --no-pretrained turns a '
                            'config file\'s pretrained: true off')
    group.add_argument('--pretrained-path', default=None, type=str,
                       help='Load this checkpoint (safetensors, .pth, timm .pth.tar) as the pretrained weights, '
                            'classifier reset as timm does; loaded with or without --pretrained (timm\'s train.py '
                            'loads it only with --pretrained), never downloads')
    group.add_argument('--pretrained-keep-head', action='store_true', default=False,
                       help='with --pretrained-path: keep the file\'s classifier when its class count equals '
                            '--num-classes (timm always resets it; only for the same classes in the same order)')
    group.add_argument('--initial-checkpoint', default='', type=str, metavar='PATH',
                       help='Load this checkpoint into model after initialization (default: none)')
    group.add_argument('--resume', default='', type=str, metavar='PATH',
                       help='resume model, optimizer and training state from this checkpoint; "auto": from the '
                            'experiment folder\'s newest checkpoint if there is one, else start (needs --experiment)')
    group.add_argument('--pretrained-cfg-overlay', nargs='*', default={}, action=_ParseKwargs,
                       help='key=value pairs overriding the model\'s pretrained config')
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

def _add_device_args(parser):
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

def _add_optimizer_args(parser):
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

def _add_schedule_args(parser):
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
    group.add_argument('--stop-epoch', default=None, type=int, metavar='N',
                       help='stop after N epochs without shortening the schedule of --epochs (evaluated and saved)')
    group.add_argument('--save-epochs', default=None, type=int, nargs='+', metavar='N',
                       help='also keep milestone-N.pth.tar after N completed epochs (evaluated)')
    group.add_argument('--lr-decay-fn', default=None, type=str, help='decay phase function of wsd/rsqrt schedules')
    group.add_argument('--lr-stable-timescale', default=None, type=float, help='rsqrt schedule timescale in epochs')
    group.add_argument('--start-epoch', default=None, type=int, metavar='N',
                       help='manual epoch number (useful on restarts)')
    group.add_argument('--decay-milestones', default=[90, 180, 270], type=int, nargs='+', metavar='MILESTONES',
                       help='list of decay epoch indices for multistep lr. must be increasing')
    group.add_argument('--decay-epochs', type=float, default=None, metavar='N',
                       help='epoch interval to decay LR (step), or the decay phase (wsd/rsqrt; a value < 1 is a '
                            'fraction); default: 90 for step, 0.2 for wsd/rsqrt')
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

def _add_augmentation_args(parser):
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

def _add_batch_norm_args(parser):
    # Batch norm parameters
    group = parser.add_argument_group('Batch norm parameters')
    group.add_argument('--bn-momentum', type=float, default=None, help='BatchNorm momentum override (if not None)')
    group.add_argument('--bn-eps', type=float, default=None, help='BatchNorm epsilon override (if not None)')
    group.add_argument('--sync-bn', action='store_true', help='Enable synchronized BatchNorm.')
    group.add_argument('--dist-bn', type=str, default='reduce',
                       help='Distribute BatchNorm stats between nodes after each epoch ("broadcast", "reduce", or "")')

def _add_ema_args(parser):
    # Model Exponential Moving Average
    group = parser.add_argument_group('Model exponential moving average parameters')
    group.add_argument('--model-ema', action='store_true', default=False,
                       help='Enable tracking moving average of model weights.')
    group.add_argument('--model-ema-force-cpu', action='store_true', default=False,
                       help='Force ema to be tracked on CPU, rank=0 node only. Disables EMA validation.')
    group.add_argument('--model-ema-decay', type=float, default=0.9998,
                       help='Decay factor for model weights moving average (default: 0.9998)')
    group.add_argument('--model-ema-warmup', action='store_true', help='Enable warmup for model EMA decay.')

def _add_misc_args(parser):
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

def _add_synermix_args(parser):
    # SynerMix
    group = parser.add_argument_group('SynerMix parameters')
    group.add_argument('--method', default=None, type=str, metavar='NAME',
                       help='method preset: baseline, mixup, manifold-mixup, synermix-intra, synermix-intra-aug, '
                            'synermix, synermix-manifold (the paper\'s), clean-view, clean-view-mixup (controls); '
                            'sets --synermix, --synermix-source, --mixup 1.0 if unset, --manifold-mixup; a flag '
                            'that contradicts the preset (--mixup 0, --mixup-prob 0) is refused; with --cutmix the '
                            'run is recorded as a CutMix one (synermix-cutmix)')
    group.add_argument('--synermix', action='store_true', default=False,
                       help='SynerMix-Intra term: supplemented batches, two views, L = b*L_intra + (1-b)*L_inter')
    group.add_argument('--synermix-beta', type=float, default=None, metavar='BETA',
                       help='beta weighing L_intra (default: 0.1 with an inter-class mixup, 0.5 for the intra term '
                            'alone, 0 without --synermix)')
    group.add_argument('--synermix-source', type=str, default=None, choices=('original', 'augmented'),
                       help='features mixed by the intra term: unaugmented originals (SynerMix) or augmented (w-RA(aug))')
    group.add_argument('--synermix-num-synth', type=int, default=1, metavar='P',
                       help='synthesized features per class and batch (default: 1)')
    group.add_argument('--synermix-every', type=int, default=1, metavar='K',
                       help='cheap mode: compute the intra term every K-th step only; with supplemented batches the '
                            'steps between get plain batches (default: 1)')
    group.add_argument('--synermix-orig-scale', type=float, default=1.0, metavar='S',
                       help='cheap mode: resize the originals by S before their pass (default: 1.0)')
    group.add_argument('--batch-composition', '--synermix-batches', dest='synermix_batches', default=None,
                       choices=BATCH_COMPOSITIONS,
                       help='what a batch holds, with or without the intra term. plain: -b images of the epoch; '
                            'supplemented: the paper\'s batches (-b grows by one image per class seen once); '
                            'fixed: the same, every batch exactly --synermix-fixed-size images (one shape for cudnn '
                            'and torch.compile); paired: -b images as -b/2 pairs of one class (a class may hold '
                            'several pairs); paired-distinct: -b/2 different classes x 2 images (default: '
                            'supplemented with --synermix, plain without)')
    group.add_argument('--batch-order', default='timm', choices=('timm', 'seeded'),
                       help='order of plain batches (no supplementation): timm\'s own (torch\'s RandomSampler on one '
                            'process, DistributedSampler under torchrun: the numbers of timm\'s train.py) or seeded '
                            'by (--seed, epoch) like SynerMix\'s, which gives the same global batches on any number '
                            'of processes (default: timm)')
    group.add_argument('--synermix-fixed-size', type=int, default=None, metavar='N',
                       help='batch size of --synermix-batches fixed (default: the 95th percentile of this data\'s '
                            'supplemented sizes, rounded up to a multiple of 8)')
    group.add_argument('--synermix-joint-pass', default='auto', choices=('auto', 'never', 'shared-bn'),
                       help='auto: originals and augmented in one forward where exact (no BatchNorm in train mode); '
                            'shared-bn: also with BatchNorm, the views sharing batch statistics (default: auto)')
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


def _add_more_timm_args(parser):
    # The rest of timm's train.py flags, with timm's names and defaults. `validation.check_args` refuses, in one
    # line with the reason, those this script does not implement when they are set.
    group = parser.add_argument_group('More timm parameters (the README lists those refused, and why)')
    group.add_argument('--train-num-samples', default=None, type=int, metavar='N',
                       help='samples in the train split, for iterable datasets')
    group.add_argument('--val-num-samples', default=None, type=int, metavar='N',
                       help='samples in the validation split, for iterable datasets')
    group.add_argument('--input-key', default=None, type=str, help='dataset key of the input images (hfds/)')
    group.add_argument('--target-key', default=None, type=str, help='dataset key of the targets (hfds/)')
    group.add_argument('--dataset-trust-remote-code', action='store_true', default=False,
                       help='let a Hugging Face dataset run code from its repository')
    group.add_argument('--fuser', default='', type=str, help='jit fuser for --torchscript')
    group.add_argument('--fast-norm', action='store_true', default=False, help='timm\'s fast norm layers')
    group.add_argument('--head-init-scale', default=None, type=float, help='scale the classifier\'s initial weights')
    group.add_argument('--head-init-bias', default=None, type=float, help='initial classifier bias')
    group.add_argument('--torchscript', action='store_true', default=False, help='torch.jit.script the model')
    group.add_argument('--model-dtype', default=None, type=str, help='model dtype without AMP (default: float32)')
    group.add_argument('--device-modules', default=None, type=str, nargs='+', help='device backend modules to import')
    group.add_argument('--layer-decay-min-scale', type=float, default=0, help='layer-wise lr decay: smallest scale')
    group.add_argument('--layer-decay-no-opt-scale', type=float, default=None,
                       help='layer-wise lr decay: scale below which a layer is not optimized')
    group.add_argument('--epoch-repeats', type=float, default=0., metavar='N', help='repeat the dataset N times per epoch')
    group.add_argument('--aug-repeats', type=float, default=0, help='repeated augmentation count')
    group.add_argument('--aug-splits', type=int, default=0, help='AugMix augmentation splits (0, or 2 or more)')
    group.add_argument('--jsd-loss', action='store_true', default=False, help='Jensen-Shannon loss over --aug-splits')
    group.add_argument('--bce-loss', action='store_true', default=False,
                       help='binary cross-entropy as the training loss (with SynerMix: the inter term; the intra term '
                            'stays cross-entropy on hard labels)')
    group.add_argument('--bce-sum', action='store_true', default=False, help='sum the BCE over classes')
    group.add_argument('--bce-target-thresh', type=float, default=None, help='binarize soft BCE targets at this value')
    group.add_argument('--bce-pos-weight', type=float, default=None, help='BCE positive weight')
    group.add_argument('--resplit', action='store_true', default=False, help='no random erasing on the first split')
    group.add_argument('--drop-connect', type=float, default=None, metavar='PCT',
                       help='deprecated name of --drop-path')
    group.add_argument('--split-bn', action='store_true', default=False, help='BatchNorm per augmentation split')
    group.add_argument('--val-interval', type=int, default=1, metavar='N',
                       help='epochs between evaluation and checkpointing (the last epoch always does both)')
    group.add_argument('--save-images', action='store_true', default=False, help='save the first batch as images')
    group.add_argument('--tta', type=int, default=0, metavar='N', help='test-time augmentation factor')
    group.add_argument('--use-multi-epochs-loader', action='store_true', default=False,
                       help='timm\'s MultiEpochsDataLoader')
    group.add_argument('--wandb-resume-id', default='', type=str, metavar='ID', help='wandb run id to resume')
    _add_variable_size_args(group)
    _add_distillation_args(group)


def _add_loss_args(parser):
    # This script's own (timm's train.py has neither): the loss by the names of timm's create_classification_loss,
    # and the task, which states what is trained here and refuses the rest.
    group = parser.add_argument_group('Task and loss')
    group.add_argument('--task', default=None, type=str,
                       help='training task: only single-label "classification" here')
    group.add_argument('--loss', default=None, type=str,
                       help='training loss by name (timm\'s create_classification_loss: ce, bce, asl, poly, jsd; '
                            'with SynerMix the inter term\'s); default: from --jsd-loss/--bce-loss, else ce')


def _add_variable_size_args(group):
    group.add_argument('--train-img-sizes', type=int, nargs='+', default=None, help='scheduled training resolutions')
    group.add_argument('--train-batch-sizes', type=int, nargs='+', default=None, help='batch size per resolution')
    group.add_argument('--train-size-probs', type=float, nargs='+', default=None, help='weights of the resolutions')
    group.add_argument('--train-size-schedule', type=str, default='constant', choices=('constant', 'progressive'),
                       help='resolution schedule')
    group.add_argument('--train-size-schedule-spread', type=float, default=0.65, help='progressive schedule spread')
    group.add_argument('--train-size-random-mix', type=float, default=0.1, help='random share of a progressive schedule')
    group.add_argument('--train-batches-per-epoch', '--train-steps-per-epoch', type=int, default=None,
                       help='loader batches per epoch')
    group.add_argument('--variable-batch-loss-scale', default='none', type=str, choices=('none', 'sqrt', 'linear'),
                       help='gradient scale for scheduled batch sizes')
    group.add_argument('--naflex-loader', action='store_true', default=False, help='NaFlex variable-size loader')
    group.add_argument('--naflex-train-seq-lens', type=int, nargs='+', default=[128, 256, 576, 784, 1024],
                       help='NaFlex sequence lengths')
    group.add_argument('--naflex-max-seq-len', type=int, default=576, help='NaFlex validation sequence length')
    group.add_argument('--naflex-patch-sizes', type=int, nargs='+', default=None, help='NaFlex patch sizes')
    group.add_argument('--naflex-patch-size-probs', type=float, nargs='+', default=None,
                       help='NaFlex patch size probabilities')
    group.add_argument('--naflex-loss-scale', default='linear', type=str, choices=('none', 'sqrt', 'linear'),
                       help='NaFlex loss scale')
    group.add_argument('--naflex-patchify-channels-first', action='store_true', default=False,
                       help='NaFlex channels-first patchify')


def _add_distillation_args(group):
    group.add_argument('--kd-model-name', default=None, type=str, help='teacher model for knowledge distillation')
    group.add_argument('--kd-distill-type', default='logit', type=str, choices=['logit', 'feature', 'token'],
                       help='distillation type')
    group.add_argument('--kd-loss-type', default='kl', type=str, help='logit distillation loss')
    group.add_argument('--distill-loss-weight', default=None, type=float, help='weight of the distillation loss')
    group.add_argument('--task-loss-weight', default=None, type=float, help='weight of the task loss')
    group.add_argument('--kd-temperature', default=4.0, type=float, help='distillation temperature')
    group.add_argument('--kd-student-feature-dim', default=None, type=int, help='student feature size')
    group.add_argument('--kd-teacher-feature-dim', default=None, type=int, help='teacher feature size')
    group.add_argument('--kd-token-distill-type', default='soft', type=str, choices=['soft', 'hard'],
                       help='token distillation type')


def build_parsers():
    """(config parser reading only -c/--debug, the full parser)."""
    config_parser = _ArgumentParser(description='Training Config', add_help=False)
    config_parser.add_argument('-c', '--config', default='', type=str, metavar='FILE',
                               help='YAML config file specifying default arguments (keys: argparse dest names)')
    config_parser.add_argument('--debug', action='store_true', default=False)

    parser = _ArgumentParser(prog=PROG, description='PyTorch Image Models training with SynerMix')
    parser.add_argument('-c', '--config', default='', type=str, metavar='FILE',
                        help='YAML config file specifying default arguments (keys: argparse dest names)')
    for add in (_add_dataset_args, _add_model_args, _add_device_args, _add_optimizer_args, _add_schedule_args,
                _add_augmentation_args, _add_batch_norm_args, _add_ema_args, _add_misc_args, _add_more_timm_args,
                _add_loss_args, _add_synermix_args):
        add(parser)
    return config_parser, parser


def parse_args(argv=None):
    """(args, parser): a YAML file given by -c sets defaults, the command line overrides them."""
    config_parser, parser = build_parsers()
    args_config, remaining = config_parser.parse_known_args(argv)
    if args_config.config:
        cfg = load_config(args_config.config, parser_dests(parser))
        parser.set_defaults(**check_config_types(cfg, parser, args_config.config))
    args = parser.parse_args(remaining)
    args.config = args_config.config
    args.debug = args.debug or args_config.debug
    return args, parser


def given_options(argv) -> dict:
    """{dest: how it was given} for every option `argv` sets itself: a flag on the command line (an abbreviation
    resolved as argparse resolves it, reported as the full flag) or a key of the `-c` file it names. Defaults are
    not included, so a flag given with its default value (`--mixup 0`) still counts as given.

    Example:
        ```python
        given_options(['--see', '7', '-c', 'x.yaml'])
        # {'seed': '--seed', 'config': '-c/--config', 'synermix_batches': "key 'synermix_batches' of x.yaml", ...}
        ```
    """
    config_parser, parser = build_parsers()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    args_config, remaining = config_parser.parse_known_args([str(a) for a in argv])
    given = {}
    if args_config.config:
        path = args_config.config
        given.update({key: f'key {key!r} of {path}' for key in load_config(path, parser_dests(parser))})
        given['config'] = '-c/--config'
    if args_config.debug:
        given['debug'] = '--debug'
    # The flag's own name: the longest spelling, never the --no- form of a yes/no flag.
    flags = {a.dest: max([o for o in a.option_strings if not o.startswith('--no-')] or a.option_strings, key=len)
             if a.option_strings else a.dest for a in parser._actions}
    given.update({dest: flags.get(dest, dest) for dest in vars(parser.parse_args(remaining))})
    return given



def option_defaults() -> dict:
    """{dest: default} of train.py's own options, before any -c file (which `parse_args` sets as defaults)."""
    return {action.dest: action.default for action in build_parsers()[1]._actions}
