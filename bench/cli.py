"""What SynerMix costs, measured side by side in one run.

Every number that carries a goal is a *ratio* between two things timed (or measured) in the
same process, interleaved repeat by repeat (the order of the variants rotates every repeat), and
summarised as the median over repeats with its interquartile range and min-max. Absolute
times only appear in the details, never as pass/fail: the machine may be shared. On CPU the
clock is this process's CPU time with one torch thread (other processes on the cores barely move
it); on CUDA it is wall time after torch.cuda.synchronize. Inputs are random tensors (the step
cost does not depend on pixel values); labels come from SupplementedBatchSampler over a
CIFAR-100-like label set (100 classes x 500), so N̂ is what training sees.

Output: one line per measurement,

    BENCH <name> ratio=<x> (<details>)

plus `PROFILE` lines (where the time beyond the plain step goes), then a markdown summary table
(row, ratio, goal, met?), also written to `--out FILE` when given.

Sections (select with --only; one module of bench/ each):
    step     full training step (forward, backward, optimizer.step) of SynerMixTask vs the
             plain task (beta=0) on the same supplemented batch and on the un-supplemented one;
             cheap modes (original_scale=0.5, intra_every=2/4); SynerMixTask(beta=0) vs timm's
             own ClassificationTask; where the extra time goes; the intra op's share of a step.
    memory   peak memory of a SynerMix step vs the plain step on the same batch.
    paired   paired and supplemented SynerMix steps vs a plain timm step at the same -b; one
             forward over both views vs two passes; peak memory of the paired step.
    shapes   distinct batch sizes in one epoch per batch mode.
    syncs    host syncs in a SynerMix training step (harness.HostSyncCounter).
    mixup    our vectorised elem-mode Mixup vs timm's, same draws.
    intra    synthesize_class_features + classifier + CE (forward + backward) vs the
             authors' per-class Python loop, at 10, 100 and 257 classes.
    sampler  SupplementedBatchSampler, 1M labels / 1,000 classes / batch 128: construction +
             one epoch, vs a naive per-batch rescan of the labels (extrapolated from a subset).
    loader   two-view loading (TwoViewDataset, one decode) vs one view and vs decoding twice,
             real PNG and JPEG files, timm transforms, num_workers=0.

Usage:
    python bench/run.py                  # full (make bench), a few minutes on 2 CPU cores
    python bench/run.py --quick          # fewer repeats (make bench-quick), < 2 minutes
    python bench/run.py --smoke          # tiny models and one repeat: checks the harness only
    python bench/run.py --device cuda    # step, memory and intra sections on the GPU
"""
import argparse
import os
import platform
import time
from typing import Optional, Sequence

import numpy as np
import torch

import timm

from .harness import CLOCK, Report, use_clock
from .intra import bench_intra
from .loader import bench_loader
from .memory import bench_step_memory
from .mixup import bench_mixup
from .paired import bench_paired
from .sampler import bench_sampler
from .shapes import bench_shapes
from .steps import StepBench, bench_steps
from .syncs import bench_syncs

SECTIONS = ('step', 'memory', 'paired', 'shapes', 'syncs', 'mixup', 'intra', 'sampler', 'loader')

# Model configurations per mode: (row name, timm model name, input px, create_model kwargs).
MODELS = {
    'full': [
        ('resnet18', 'resnet18', 32, {}),
        ('mobilenetv3_large', 'mobilenetv3_large_100', 32, {}),
        # Swin-T (the paper's model, all its dims and depths) at 32 px: windows of 4 tokens.
        ('swin_tiny', 'swin_tiny_patch4_window7_224', 32, dict(img_size=32, window_size=4)),
    ],
    'smoke': [
        ('resnet10t', 'resnet10t', 16, {}),
        ('mobilenetv3_small', 'mobilenetv3_small_050', 16, {}),
        ('swin_micro', 'swin_tiny_patch4_window7_224', 32,
         dict(img_size=32, window_size=4, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))),
    ],
}

PRESETS = {
    # sampler: (labels, classes, batch size, batches timed for the naive sampler, repeats)
    'full': dict(repeats=6, warmup=1, batch=32, num_classes=100, every=(2, 4), overhead_rows=True,
                 intra_repeats=15, intra_block=5, sampler=(1_000_000, 1000, 128, 20, 3),
                 images=256, loader_repeats=5, models='full'),
    'quick': dict(repeats=3, warmup=1, batch=16, num_classes=100, every=(2,), overhead_rows=False,
                  intra_repeats=7, intra_block=3, sampler=(1_000_000, 1000, 128, 6, 2),
                  images=96, loader_repeats=3, models='full'),
    'smoke': dict(repeats=1, warmup=1, batch=8, num_classes=20, every=(2,), overhead_rows=True,
                  intra_repeats=1, intra_block=1, sampler=(20_000, 100, 32, 2, 1),
                  images=16, loader_repeats=1, models='smoke'),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--quick', action='store_true', help='fewer repeats and rows (< 2 min on 2 CPU cores)')
    mode.add_argument('--smoke', action='store_true', help='tiny models, one repeat: checks the harness only')
    parser.add_argument('--device', default='cpu', help='cpu or cuda (step, memory and intra sections)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (default 1: on a shared machine more threads contend and '
                             'make timings bimodal; ratios are what is reported)')
    parser.add_argument('--clock', choices=sorted(CLOCK), default=None,
                        help='cpu: CPU time of this process (default on CPU: robust on a shared machine); '
                             'wall: elapsed time (default with --device cuda, after torch.cuda.synchronize)')
    parser.add_argument('--only', nargs='+', choices=SECTIONS, default=list(SECTIONS), help='sections to run')
    parser.add_argument('--repeats', type=int, default=None, help='override the repeats of the step section')
    parser.add_argument('--out', default=None, help='also write the BENCH lines and summary table to this file')
    return parser


def run_sections(report: Report, cfg: dict, device: torch.device, sections: Sequence[str]) -> None:
    models = MODELS[cfg['models']]
    if 'step' in sections or 'memory' in sections:
        for spec in models:
            steps = StepBench(spec, cfg, device)
            if 'step' in sections:
                bench_steps(report, steps, cfg)
            if 'memory' in sections:
                bench_step_memory(report, steps)
    if 'paired' in sections:
        for spec in models:
            bench_paired(report, spec, cfg, device)
    if 'shapes' in sections:
        bench_shapes(report)
    if 'syncs' in sections:
        bench_syncs(report, cfg, device)
    if 'mixup' in sections:
        bench_mixup(report, cfg, device)
    if 'intra' in sections:
        bench_intra(report, cfg, device)
    if 'sampler' in sections:
        bench_sampler(report, cfg)
    if 'loader' in sections:
        bench_loader(report, cfg)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    preset = 'smoke' if args.smoke else 'quick' if args.quick else 'full'
    cfg = dict(PRESETS[preset])
    if args.repeats:
        cfg['repeats'] = args.repeats
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    torch.set_num_threads(args.threads)
    clock_name = args.clock or ('wall' if device.type == 'cuda' else 'cpu')
    use_clock(clock_name)
    torch.manual_seed(0)
    np.random.seed(0)

    report = Report()
    started = time.perf_counter()
    gpu = f', {torch.cuda.get_device_name(device)}' if device.type == 'cuda' else ''
    report.emit(f'# timm-synermix bench ({preset}): device={device}{gpu}, torch {torch.__version__}, '
                f'timm {timm.__version__}, {os.cpu_count()} CPUs, {args.threads} torch thread(s), {clock_name} clock, '
                f'{platform.processor() or platform.machine()}, python {platform.python_version()}')
    report.emit('# ratios are medians over interleaved repeats (variant order rotates each repeat); '
                'IQR and min-max show the spread; goals are read here, never asserted by tests')
    run_sections(report, cfg, device, args.only)

    title = f'## Summary ({preset}, device={device}, {time.perf_counter() - started:.0f} s)'
    table = report.summary()
    print(f'\n{title}\n\n{table}', flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            f.write('\n'.join(report.lines) + f'\n\n{title}\n\n' + table + '\n')
    return 0
