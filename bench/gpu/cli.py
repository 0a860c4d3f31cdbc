"""make gpu-check: what SynerMix costs on one CUDA GPU, and a short glyph training, in one command (< 8 min, H200).

Sections (every row of the output ends with `cmd: ...`, the command that reproduces it):
    step     resnet50 at 224 px, -b 64, AMP bf16, channels_last, random init, synthetic images on the GPU, labels
             from the samplers over 1000 classes x 1300: step time, images/s, peak memory of plain MixUp on plain
             batches and of SynerMix (and MixUp, beta=0) on paired, fixed and supplemented batches; SynerMix/plain
             ratios per batch mode (interleaved repeats, medians: bench/harness.py); batch sizes per mode.
    syncs    host syncs per step: warnings raised under torch.cuda.set_sync_debug_mode('warn') in the step above.
    glyphs   glyphs rendered at 64 px from matplotlib's fonts (nothing downloaded), then the trainer's main(argv)
             (the study's recipe, resnet18) with --method baseline and with --method synermix for a fixed number
             of epochs: top-1 on unseen font families, wall time.
    compile  torch.compile (SynerMixTask.compile, inductor) per batch mode on resnet18 at 64 px: graphs compiled
             after the first step (recompiles) and dynamo's reasons; supplemented sizes vary: expect some there.

    python bench/gpu_check.py --out bench/results_gpu.txt    # make gpu-check, on a CUDA machine
    python bench/gpu_check.py --dry-run --out /tmp/gpu.txt     # the same plan on CPU, tiny sizes, < 60 s (CI)
"""
import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import timm

from ..harness import use_clock
from .glyphs import bench_glyphs
from .recompiles import bench_compile
from .rows import Rows
from .steps import bench_step, setup_steps
from .syncs import bench_syncs

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ('step', 'syncs', 'glyphs', 'compile')
PLANS = {
    'gpu': dict(device='cuda', model='resnet50', px=224, batch=64, classes=1000, per_class=1300, amp=True,
                batches=4, repeats=10, warmup=1, sync_steps=4, shape_batches=1000, budget_s=420,
                compile=dict(model='resnet18', px=64, steps=8, backend='inductor', mode_s=60),
                glyph=dict(model='resnet18', size=64, batch=64, lr=0.1, epochs=25, workers=8, amp=True,
                           scripts=('latin', 'greek', 'cyrillic'), train_fonts=None, val_fonts=None)),
    'dry': dict(device='cpu', model='test_resnet', px=32, batch=8, classes=20, per_class=30, amp=False,
                batches=2, repeats=2, warmup=1, sync_steps=2, shape_batches=50, budget_s=300,
                compile=dict(model='test_resnet', px=32, steps=4, backend='eager', mode_s=0),
                glyph=dict(model='test_resnet', size=32, batch=32, lr=0.1, epochs=1, workers=0, amp=False,
                           scripts=('latin',), train_fonts=3, val_fonts=1)),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results_gpu.txt'), help='results file')
    parser.add_argument('--dry-run', action='store_true', help='the whole plan on CPU with tiny sizes (CI)')
    parser.add_argument('--only', nargs='+', choices=SECTIONS, default=list(SECTIONS), help='sections to run')
    parser.add_argument('--budget-s', type=float, default=None, help='seconds from the start: compile modes that '
                        'would start past it (less their estimated time) are skipped')
    parser.add_argument('--glyph-epochs', type=int, default=None, help='epochs of each glyph training run')
    return parser


def run_sections(report: Rows, cfg, device, only, deadline: float) -> None:
    steppers = None
    for report.section in [s for s in SECTIONS if s in only]:
        section_start = time.perf_counter()
        if report.section == 'step':
            steppers = bench_step(report, cfg, device)
        elif report.section == 'syncs':
            if steppers is None and device.type == 'cuda':
                steppers = setup_steps(cfg, device)   # the same steps, untimed
            bench_syncs(report, cfg, steppers, device)
            steppers = None   # the step section's model, batches and optimizer state are not needed further
            torch.cuda.empty_cache()
        elif report.section == 'glyphs':
            with tempfile.TemporaryDirectory(prefix='synermix_gpu_check_') as work:
                bench_glyphs(report, cfg, Path(work))
        elif report.section == 'compile':
            bench_compile(report, cfg, device, deadline)
        report.emit(f'# section {report.section}: {time.perf_counter() - section_start:.0f} s')


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg = dict(PLANS['dry' if args.dry_run else 'gpu'])
    cfg['glyph'] = dict(cfg['glyph'], **({'epochs': args.glyph_epochs} if args.glyph_epochs else {}))
    if not args.dry_run and not torch.cuda.is_available():
        parser.error('no CUDA device is available: use --dry-run to check the plan on CPU')
    device = torch.device(cfg['device'])
    started = time.perf_counter()
    use_clock('wall' if device.type == 'cuda' else 'cpu')
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    np.random.seed(0)
    report = Rows(Path(args.out), args.dry_run)
    gpu = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'no GPU (dry run on CPU)'
    report.emit(f'# {shlex.join(["python", "bench/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])} | '
                f'torch {torch.__version__} (CUDA {torch.version.cuda}) | timm {timm.__version__} | {gpu} | '
                f'{os.cpu_count()} CPUs | python {platform.python_version()}')
    report.emit('# BENCH <row> <unit>=<median> (<what>; spread over interleaved repeats; cmd: <command>); '
                'ratios are per-repeat ratios of cases timed side by side in this one process')
    run_sections(report, cfg, device, args.only, started + (args.budget_s or cfg['budget_s']))
    elapsed = time.perf_counter() - started
    table = report.summary()
    print(f'\n## Summary ({elapsed:.0f} s)\n\n{table}', flush=True)
    with open(args.out, 'a') as f:
        f.write(f'\n## Summary ({"dry run, " if args.dry_run else ""}{elapsed:.0f} s)\n\n{table}\n')
    return 0
