#!/usr/bin/env python
"""make gpu-check: what SynerMix costs on one CUDA GPU, and a short glyph training, in one command (< 8 min, H200).

Sections (every row of the output ends with `cmd: ...`, the command that reproduces it):
    step     resnet50 at 224 px, -b 64, AMP bf16, channels_last, random init, synthetic images on the GPU, labels
             from the samplers over 1000 classes x 1300: step time, images/s, peak memory of plain MixUp on plain
             batches and of SynerMix (and MixUp, beta=0) on paired, fixed and supplemented batches; SynerMix/plain
             ratios per batch mode (interleaved repeats, medians: bench/run.py's harness); batch sizes per mode.
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
import contextlib
import importlib.util
import json
import logging
import logging.handlers
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import timm  # noqa: E402
from timm_synermix import PairedBatchSampler, SupplementedBatchSampler, TwoViews, create_synermix_task  # noqa: E402


# bench/run.py's harness (Report, interleave, per_repeat, median, timed, peak_step_memory), loaded by path.
_spec = importlib.util.spec_from_file_location('synermix_bench_run', ROOT / 'bench' / 'run.py')
H = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(H)
SECTIONS = ('step', 'syncs', 'glyphs', 'compile')
MODES = ('plain', 'paired', 'fixed', 'supplemented')
GLYPH_BETA = 0.4   # timm_synermix.experiments.study.BETA: the beta the paper's holdout protocol chose on glyphs
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


class Rows(H.Report):
    """bench/run.py's BENCH rows, plus absolute values (`BENCH name ms=...`), written to `out` as they come."""

    def __init__(self, out: Path, dry: bool):
        super().__init__()
        self.out, self.dry, self.section = out, dry, None
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text('')

    def cmd(self) -> str:
        return shlex.join(['python', 'bench/gpu_check.py', *['--dry-run'][:self.dry], '--only', self.section])

    def emit(self, line: str) -> None:
        super().emit(line)
        with open(self.out, 'a') as f:
            f.write(line + '\n')

    def ratio(self, name, values, what, cmd=None):
        return self.bench(name, values, what, extra=f'cmd: {cmd or self.cmd()}')

    def value(self, name, key, values, what, cmd=None):
        """`BENCH name key=<median> (what; spread; cmd)`: an absolute number (ms, img_s, GiB, count, top1, s)."""
        values = np.asarray(values, dtype=np.float64)
        q1, q3 = np.percentile(values, [25, 75])
        spread = f'IQR {q1:.4g}-{q3:.4g}, min-max {values.min():.4g}-{values.max():.4g}, n={values.size}'
        self.emit(f'BENCH {name} {key}={np.median(values):.4g} ({what}; {spread}; cmd: {cmd or self.cmd()})')
        self.rows.append((name, float(np.median(values)), key, None))

    def note(self, text: str) -> None:
        super().note(f'{text} (cmd: {self.cmd()})')

    def summary(self) -> str:
        rows = [f'| {name} | {value:.4g} | {"ratio" if unit == "info" else unit} |' for name, value, unit, _ in
                self.rows]
        return '\n'.join(['| row | value | unit |', '| --- | ---: | --- |', *rows])


def samplers_for(cfg, batch: int):
    """An ImageNet-like label set and its sampler per batch mode (plain, paired, fixed, supplemented)."""
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(cfg['classes']), cfg['per_class']))
    supplemented = SupplementedBatchSampler(labels, batch, seed=0)
    return labels, {
        'plain': SupplementedBatchSampler(labels, batch, seed=0, supplement=False),
        'paired': PairedBatchSampler(labels, batch, seed=0),
        'fixed': SupplementedBatchSampler(labels, batch, seed=0, fixed_size=supplemented.suggest_fixed_size()),
        'supplemented': supplemented,
    }


def first_batches(labels, sampler, count: int, device) -> list:
    sampler.set_epoch(0)
    batches = iter(sampler)
    return [torch.as_tensor(labels[next(batches)], device=device) for _ in range(count)]


def make_model(name: str, classes: int, device, channels_last: bool):
    model = timm.create_model(name, num_classes=classes).to(device).train()
    return model.to(memory_format=torch.channels_last) if channels_last else model


class Stepper:
    """Runs training steps of one task on a list of label batches with synthetic images (both views)."""

    def __init__(self, task, optimizer, batches, pools, amp: bool, two_views: bool):
        self.task, self.optimizer, self.batches, self.two_views = task, optimizer, batches, two_views
        self.augmented, self.original = pools
        self.autocast = (lambda: torch.autocast('cuda', dtype=torch.bfloat16)) if amp else contextlib.nullcontext

    def step(self, y) -> None:
        n = y.numel()
        x = self.augmented[:n].clone()      # Mixup mixes in place: a fresh batch each step
        with self.autocast():
            out = self.task(TwoViews(original=self.original[:n], augmented=x) if self.two_views else x, y)
        self.optimizer.zero_grad(set_to_none=True)
        out['loss'].backward()
        self.optimizer.step()

    def block(self) -> None:
        for y in self.batches:
            self.step(y)


def build_steppers(cfg, model, batches_by_mode, device):
    """Case name -> Stepper: plain MixUp on plain batches; SynerMix and MixUp (beta=0) on each other mode."""
    largest = max(y.numel() for batches in batches_by_mode.values() for y in batches)
    gen = torch.Generator(device=device).manual_seed(0)
    layout = torch.channels_last if cfg['device'] == 'cuda' else torch.contiguous_format
    pools = tuple(torch.randn(largest, 3, cfg['px'], cfg['px'], device=device, generator=gen)
                  .contiguous(memory_format=layout) for _ in range(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)

    def task(method):
        return create_synermix_task(model, method, num_classes=cfg['classes'], verbose=False).train()
    tasks = {'mixup': task('mixup'), 'synermix': task('synermix')}
    steppers = {'plain': Stepper(tasks['mixup'], optimizer, batches_by_mode['plain'], pools, cfg['amp'], False)}
    for mode in MODES[1:]:
        for method in ('synermix', 'mixup'):
            steppers[f'{method}_{mode}'] = Stepper(tasks[method], optimizer, batches_by_mode[mode], pools,
                                                   cfg['amp'], method == 'synermix')
    return steppers


def setup_steps(cfg, device):
    labels, samplers = samplers_for(cfg, cfg['batch'])
    batches = {m: first_batches(labels, s, cfg['batches'], device) for m, s in samplers.items()}
    return build_steppers(cfg, make_model(cfg['model'], cfg['classes'], device, cfg['device'] == 'cuda'), batches,
                          device)


def bench_step(report: Rows, cfg, device):
    labels, samplers = samplers_for(cfg, cfg['batch'])
    for mode, sampler in samplers.items():
        sampler.set_epoch(0)
        sizes = [len(b) for _, b in zip(range(cfg['shape_batches']), sampler)]
        report.value(f'shapes.{mode}.distinct_batch_sizes', 'count', [len(set(sizes))],
                     f'{cfg["classes"]} classes x {cfg["per_class"]}, -b {cfg["batch"]}, first {len(sizes)} batches of '
                     f'epoch 0: sizes {min(sizes)}-{max(sizes)}, mean {np.mean(sizes):.1f}')
    steppers = setup_steps(cfg, device)
    times = H.interleave({name: (lambda s=s: H.timed(s.block, device)) for name, s in steppers.items()},
                         cfg['repeats'], cfg['warmup'])
    setting = (f'{cfg["model"]} {cfg["px"]}px, -b {cfg["batch"]}, {cfg["classes"]} classes, '
               f'{"AMP bf16, channels_last" if cfg["amp"] else "fp32"}, SGD, {cfg["batches"]} batches per timed block '
               f'(all sizes seen in warm-up), {device.type}')
    for name, s in steppers.items():
        images = sum(y.numel() for y in s.batches)
        step_ms = [t / len(s.batches) * 1e3 for t in times[name]]
        rate = [images / t for t in times[name]]
        epoch_rate = [cfg['batch'] * len(s.batches) / t for t in times[name]]
        report.value(f'step.{name}', 'ms', step_ms, f'one training step, {images / len(s.batches):.1f} images '
                     f'per batch; {setting}')
        report.value(f'img_per_s.{name}', 'img_s', rate,
                     f'batch images per second (originals not counted); epoch throughput '
                     f'{H.median(epoch_rate):.0f} -b images/s (every mode has the same batches per epoch); {setting}')
    for mode in MODES[1:]:
        report.ratio(f'ratio.synermix_vs_plain.{mode}', H.per_repeat(times, f'synermix_{mode}', 'plain'),
                     f'SynerMix step on {mode} batches / plain MixUp step on plain batches of {cfg["batch"]} '
                     f'(= epoch time ratio); {setting}')
        report.ratio(f'ratio.synermix_vs_mixup_same_batch.{mode}',
                     H.per_repeat(times, f'synermix_{mode}', f'mixup_{mode}'),
                     f'SynerMix step / MixUp step (beta=0) on the same {mode} batches; {setting}')
    peaks = {}
    for name, s in steppers.items():
        above = H.peak_step_memory(s.block, device)
        absolute = torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else None
        peaks[name] = absolute or above
        how = (f'torch.cuda.max_memory_allocated over one block, {above / 2 ** 30:.2f} GiB above weights, grads and '
               'optimizer state' if absolute else 'tensor storages above weights (bench/run.py PeakTensorMemory)')
        report.value(f'memory.{name}', 'GiB', [peaks[name] / 2 ** 30], f'peak memory: {how}; {setting}')
    for mode in MODES[1:]:
        report.ratio(f'memory.synermix_vs_plain.{mode}', [peaks[f'synermix_{mode}'] / peaks['plain']],
                     f'peak memory of SynerMix on {mode} batches / plain MixUp on plain batches; {setting}')
    return steppers


def bench_syncs(report: Rows, cfg, steppers, device):
    if device.type != 'cuda':
        report.note('syncs skipped: torch.cuda.set_sync_debug_mode needs a CUDA device')
        return
    one = torch.ones(1, device=device)
    cases = {'control_item': lambda i: one.item()}   # one known sync: shows that the warnings are counted
    for name in ('plain', 'synermix_paired', 'synermix_fixed', 'synermix_supplemented'):
        cases[name] = lambda i, s=steppers[name]: s.step(s.batches[i % len(s.batches)])
    for name, run in cases.items():
        counts, where = [], set()
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode('warn')
        try:
            for i in range(cfg['sync_steps']):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter('always')
                    run(i)
                syncs = [w for w in caught if 'synchroniz' in str(w.message).lower()]
                where.update(f'{Path(w.filename).name}:{w.lineno}' for w in syncs)
                counts.append(len(syncs))
        finally:
            torch.cuda.set_sync_debug_mode(0)
        what = ('one tensor.item() (control: 1 expected)' if name == 'control_item' else
                'one training step (forward under autocast, backward, SGD step)')
        report.value(f'syncs.{name}', 'count', counts, f'synchronizing CUDA calls warned by torch.cuda.'
                     f'set_sync_debug_mode("warn") in {what}; at: {", ".join(sorted(where)) or "none"}')


def bench_compile(report: Rows, cfg, device, deadline: float):
    c = cfg['compile']
    labels, samplers = samplers_for(cfg, cfg['batch'])
    log = logging.handlers.BufferingHandler(10 ** 6)   # dynamo's 'Recompiling function ...' records
    torch._logging.set_logs(recompiles=True)
    loggers = [logging.getLogger(name) for name in ('torch', 'torch._dynamo')]
    for logger in loggers:
        logger.addHandler(log)
    try:
        for mode in MODES:
            if time.perf_counter() > deadline - c['mode_s']:
                report.note(f'compile.{mode} skipped: the time budget (--budget-s) is spent')
                continue
            try:
                compile_mode(report, cfg, device, mode, first_batches(labels, samplers[mode], c['steps'], device), log)
            except Exception as e:   # e.g. no C compiler for triton: the other sections' rows still count
                report.note(f'compile.{mode} failed: {type(e).__name__}: {" ".join(str(e).split())[:300]}')
    finally:
        for logger in loggers:
            logger.removeHandler(log)
        torch._logging.set_logs()


def compile_mode(report: Rows, cfg, device, mode: str, batches, log: logging.handlers.BufferingHandler):
    """Steps of one batch mode under SynerMixTask.compile: graphs compiled per step, counted by a wrapping backend."""
    from torch._dynamo.backends.registry import lookup_backend   # imports torch._dynamo
    c = cfg['compile']
    torch._dynamo.reset()
    log.flush()
    model = make_model(c['model'], cfg['classes'], device, cfg['device'] == 'cuda')
    compiled_at, at = [], [0]

    def backend(gm, example_inputs):
        compiled_at.append(at[0])
        return lookup_backend(c['backend'])(gm, example_inputs)
    steppers = build_steppers(dict(cfg, px=c['px']), model, {m: batches for m in MODES}, device)
    s = steppers['plain' if mode == 'plain' else f'synermix_{mode}']
    s.task.compile(backend=backend)
    for at[0], y in enumerate(batches):
        s.step(y)
    sizes = sorted({y.numel() for y in batches})
    messages = dict.fromkeys(' '.join(r.getMessage().split()) for r in log.buffer)   # seen at two logger levels
    reasons = [m.split('guard failure(s):')[-1].strip()[:160] for m in messages if 'Recompiling' in m]
    report.value(f'compile.{mode}.recompiles', 'count', [sum(1 for i in compiled_at if i > 0)],
                 f'graphs compiled after step 1 of {len(batches)} ({"SynerMix" if mode != "plain" else "MixUp"}'
                 f', SynerMixTask.compile, backend {c["backend"]}, {c["model"]} {c["px"]}px); graphs in step '
                 f'1: {compiled_at.count(0)}; batch sizes {sizes}; dynamo recompile reasons: '
                 f'{" | ".join(reasons) or "none"}')


def glyph_command(cfg, data_root: str, method: str, run_dir: Path) -> list:
    """train.py arguments: the study's recipe on the GPU; SynerMix with the study's beta."""
    from timm_synermix.experiments.study import recipe
    g = cfg['glyph']
    args = recipe(dict(model=g['model'], size=g['size'], batch=g['batch'], lr=g['lr'], log_interval=100, last_k=3))
    args[args.index('--device') + 1] = cfg['device']
    args[args.index('-j') + 1] = str(g['workers'])
    args += ['--method', method, '--epochs', str(g['epochs']), '--seed', '0', '--no-feature-metrics',
             '--output', str(run_dir.parent), '--experiment', run_dir.name]
    args += ['--synermix-beta', str(GLYPH_BETA)] if method == 'synermix' else []
    args += ['--amp', '--amp-dtype', 'bfloat16', '--channels-last'] if g['amp'] else []
    args += ['--use-multi-epochs-loader'] if g['workers'] else []
    return [data_root, *args]


def bench_glyphs(report: Rows, cfg, work: Path):
    import matplotlib
    from timm_synermix.experiments.fonts import build_font_dataset
    from timm_synermix.trainer.main import main as train_main
    g = cfg['glyph']
    fonts = os.path.join(os.path.dirname(matplotlib.__file__), 'mpl-data', 'fonts', 'ttf')
    kwargs = dict(size=g['size'], val_families=2, train_fonts_per_class=g['train_fonts'],
                  val_fonts_per_class=g['val_fonts'], scripts=g['scripts'], min_train_fonts=3, min_val_fonts=1)
    data = build_font_dataset(work / 'glyphs', fonts_dirs=[fonts], **kwargs)
    counts = {s: sum(data['counts'][s].values()) for s in ('train', 'val')}
    built = (f'<glyphs> = build_font_dataset(fonts_dirs=[matplotlib mpl-data/fonts/ttf], '
             f'{", ".join(f"{k}={v!r}" for k, v in kwargs.items())}): {data["num_classes"]} classes, {counts["train"]} '
             f'train / {counts["val"]} val images, val font families {data["manifest"].get("val_groups")} (matplotlib '
             'ships DejaVu, STIX and Computer Modern only: fewer fonts per class than the study\'s Debian fonts)')
    report.note(built)
    results = {}
    for method in ('baseline', 'synermix'):
        argv = glyph_command(cfg, str(data['root']), method, work / 'runs' / method)
        cmd = shlex.join(['python', '-m', 'timm_synermix.trainer', '<glyphs>', *argv[1:]]).replace(str(work), '<tmp>')
        start = time.perf_counter()
        try:   # in this process: the wall time leaves out python's and timm's import (same for both runs)
            rc = train_main(argv)
        except SystemExit as e:
            rc = e.code
        wall = time.perf_counter() - start
        if rc != 0:
            report.note(f'glyphs.{method} failed (exit {rc}) after {wall:.0f} s (its log is above); cmd: {cmd}')
            continue
        res = json.loads((work / 'runs' / method / 'results.json').read_text())
        results[method] = res, wall
        report.value(f'glyphs.{method}.top1', 'top1', [res['last_k_mean_top1']],
                     f'top-1 (%) on unseen font families, mean of the last {res["last_k"]} epochs (best '
                     f'{res["best_top1"]:.2f} at epoch {res["best_epoch"]}); {g["epochs"]} epochs, '
                     f'{res["cost"]["image_passes"]} image passes, {res["cost"]["train_seconds"]:.1f} s training', cmd)
        report.value(f'glyphs.{method}.wall', 's', [wall], 'wall time of the trainer\'s main(argv) in this process '
                     '(set-up, data, training, evaluation, outputs; not python\'s imports)', cmd)
    if len(results) == 2:
        (b, bw), (s, sw) = results['baseline'], results['synermix']
        report.value('glyphs.synermix_minus_baseline.top1', 'points',
                     [s['last_k_mean_top1'] - b['last_k_mean_top1']], 'top-1 of SynerMix minus baseline, one seed')
        report.ratio('glyphs.synermix_vs_baseline.wall', [sw / bw], 'wall time of SynerMix / baseline run')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results_gpu.txt'), help='results file')
    parser.add_argument('--dry-run', action='store_true', help='the whole plan on CPU with tiny sizes (CI)')
    parser.add_argument('--only', nargs='+', choices=SECTIONS, default=list(SECTIONS), help='sections to run')
    parser.add_argument('--budget-s', type=float, default=None, help='seconds from the start: compile modes that '
                        'would start past it (less their estimated time) are skipped')
    parser.add_argument('--glyph-epochs', type=int, default=None, help='epochs of each glyph training run')
    args = parser.parse_args(argv)
    cfg = dict(PLANS['dry' if args.dry_run else 'gpu'])
    cfg['glyph'] = dict(cfg['glyph'], **({'epochs': args.glyph_epochs} if args.glyph_epochs else {}))
    if not args.dry_run and not torch.cuda.is_available():
        parser.error('no CUDA device is available: use --dry-run to check the plan on CPU')
    device = torch.device(cfg['device'])
    started = time.perf_counter()
    deadline = started + (args.budget_s or cfg['budget_s'])
    H.clock = H.CLOCK['wall'] if device.type == 'cuda' else H.CLOCK['cpu']
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
    steppers = None
    for report.section in [s for s in SECTIONS if s in args.only]:
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
    elapsed = time.perf_counter() - started
    table = report.summary()
    print(f'\n## Summary ({elapsed:.0f} s)\n\n{table}', flush=True)
    with open(args.out, 'a') as f:
        f.write(f'\n## Summary ({"dry run, " if args.dry_run else ""}{elapsed:.0f} s)\n\n{table}\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
