#!/usr/bin/env python
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

Sections (select with --only):
    step     full training step (forward, backward, optimizer.step) of SynerMixTask vs the
             plain task (beta=0) on the same supplemented batch and on the un-supplemented one;
             cheap modes (original_scale=0.5, intra_every=2/4); SynerMixTask(beta=0) vs timm's
             own ClassificationTask; where the extra time goes; the intra op's share of a step.
    memory   peak memory of a SynerMix step vs the plain step on the same batch.
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
import sys
import tempfile
import time
import weakref
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import timm
from timm.loss import SoftTargetCrossEntropy
from timm.task import ClassificationTask

from timm_synermix import (
    Mixup, PairedBatchSampler, SupplementedBatchSampler, SynerMixTask, TwoViewDataset, TwoViews,
    create_synermix_loader, create_synermix_task, dataset_labels, synthesize_class_features,
)
from timm_synermix.method.task import batch_dependent_layers

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


# --------------------------------------------------------------------------------------------
# Reporting

class Report:
    """Collects BENCH rows, prints them as they come, and renders the summary table."""

    def __init__(self):
        self.rows = []      # (name, ratio, goal text, met: Optional[bool], meaning)
        self.lines = []

    def emit(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def bench(self, name: str, values: Sequence[float], what: str, goal: Optional[str] = None,
              extra: str = '') -> float:
        """Emit `BENCH name ratio=<median> (...)` for per-repeat ratios `values`; `goal` like '<=2.05'."""
        values = np.asarray([v for v in values], dtype=np.float64)
        median = float(np.median(values))
        q1, q3 = (float(v) for v in np.percentile(values, [25, 75]))
        spread = f'IQR {q1:.3g}-{q3:.3g}, min-max {values.min():.3g}-{values.max():.3g}, n={values.size}'
        met = None
        if goal:
            op = next(o for o in ('<=', '>=', '<', '>') if goal.startswith(o))
            bound = float(goal[len(op):])
            met = {'<=': median <= bound, '>=': median >= bound, '<': median < bound, '>': median > bound}[op]
        details = f'{what}; {spread}' + (f'; {extra}' if extra else '') + (f'; goal {goal}' if goal else '')
        self.emit(f'BENCH {name} ratio={median:.4g} ({details})')
        self.rows.append((name, median, goal or 'info', met))
        return median

    def note(self, text: str) -> None:
        self.emit(f'NOTE {text}')

    def profile(self, name: str, text: str) -> None:
        self.emit(f'PROFILE {name} {text}')

    def summary(self) -> str:
        out = ['| row | ratio | goal | met? |', '| --- | ---: | --- | --- |']
        for name, ratio, goal, met in self.rows:
            mark = 'n/a' if met is None else ('yes' if met else '**no**')
            out.append(f'| {name} | {ratio:.3g} | {goal} | {mark} |')
        return '\n'.join(out)


# --------------------------------------------------------------------------------------------
# Timing helpers

def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# CPU time of this process by default on CPU: the work done, insensitive to other processes that
# share the cores (wall time on a shared machine swings by +-50% from one step to the next).
CLOCK = {'cpu': time.process_time, 'wall': time.perf_counter}
clock = time.process_time


def timed(fn: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    start = clock()
    fn()
    synchronize(device)
    return clock() - start


def interleave(cases: Dict[str, Callable[[], float]], repeats: int, warmup: int) -> Dict[str, List[float]]:
    """Run every case once per repeat, rotating their order; each case returns its own seconds."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(cases[name]())
    return times


def per_repeat(times: Dict[str, List[float]], num: str, den: str) -> List[float]:
    return [a / b for a, b in zip(times[num], times[den])]


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def fmt_s(seconds: float) -> str:
    return f'{seconds * 1e3:.1f} ms' if seconds < 1 else f'{seconds:.2f} s'


# --------------------------------------------------------------------------------------------
# Step cost, cheap modes, where the time goes, memory

def realistic_batches(num_classes: int, per_class: int, batch_size: int, seed: int = 0):
    """First batch of an epoch, plain and supplemented (same shard, same first `batch_size` images)."""
    labels = np.repeat(np.arange(num_classes), per_class)
    supplemented = next(iter(SupplementedBatchSampler(labels, batch_size, seed=seed)))
    plain = next(iter(SupplementedBatchSampler(labels, batch_size, seed=seed, supplement=False)))
    return torch.as_tensor(labels[plain]), torch.as_tensor(labels[supplemented])


def make_mixup(num_classes: int) -> Mixup:
    return Mixup(mixup_alpha=1.0, mode='elem', label_smoothing=0.0, num_classes=num_classes)


def pre_logits_dim(model: nn.Module, px: int, device: torch.device) -> int:
    with torch.no_grad():
        was_training = model.training
        model.eval()
        features = model.forward_head(model.forward_features(torch.zeros(1, 3, px, px, device=device)),
                                      pre_logits=True)
        model.train(was_training)
    return features.shape[-1]


class PeakTensorMemory:
    """Peak bytes of tensor storages created while active (CPU or any device), above those before.

    A TorchDispatchMode sees every op of the forward, backward (CPU autograd runs in this thread)
    and optimizer step; each new storage an op returns (not a view or in-place result) is counted
    until it is freed. Allocator caching, fragmentation and library scratch space are not counted.
    """

    def __new__(cls):
        from torch.utils._python_dispatch import TorchDispatchMode

        class _Mode(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.live, self.current, self.peak = {}, 0, 0

            def _free(self, key):
                self.current -= self.live.pop(key, 0)

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                returns = func._schema.returns
                for i, t in enumerate(out if isinstance(out, (tuple, list)) else (out,)):
                    if not isinstance(t, torch.Tensor) or (i < len(returns) and returns[i].alias_info is not None):
                        continue
                    storage = t.untyped_storage()
                    key, nbytes = storage.data_ptr(), storage.nbytes()
                    if nbytes == 0 or key in self.live:
                        continue
                    self.live[key] = nbytes
                    self.current += nbytes
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, key)
                return out
        return _Mode()


def peak_step_memory(fn: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated by tensors during `fn`, above what was allocated before it.

    CUDA: torch.cuda.max_memory_allocated. CPU: `PeakTensorMemory` (every storage an op creates,
    until freed): the activations, gradients, temporaries and input batch of the step, not RSS.
    """
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    with PeakTensorMemory() as tracker:
        fn()
    return tracker.peak


def bench_model_steps(report: Report, spec, cfg: dict, device: torch.device, sections: Sequence[str]) -> None:
    row, model_name, px, kwargs = spec
    num_classes = cfg['num_classes']
    y_plain, y = realistic_batches(num_classes, 500, cfg['batch'])
    y_plain, y = y_plain.to(device), y.to(device)
    n, n_hat = y_plain.numel(), y.numel()
    gen = torch.Generator().manual_seed(0)
    augmented = torch.randn(n_hat, 3, px, px, generator=gen).to(device)
    original = torch.randn(n_hat, 3, px, px, generator=gen).to(device)
    augmented_plain = torch.randn(n, 3, px, px, generator=gen).to(device)

    model = timm.create_model(model_name, num_classes=num_classes, **kwargs).to(device)
    model.train()
    # One model and optimizer shared by all variants: same weights, same parameter count; a tiny lr
    # keeps the weights finite over the many steps (the values do not matter, only the work).
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    strict_size = getattr(getattr(model, 'patch_embed', None), 'strict_img_size', False)

    def task(method: str = 'synermix', **kw) -> SynerMixTask:
        # the paper's presets with the bench's mixup (elem mode, no smoothing): MixUp with or without SynerMix
        return create_synermix_task(model, method, num_classes=num_classes, mixup_mode='elem', label_smoothing=0.0,
                                    verbose=False, **kw).train()

    plain = task('mixup')
    synermix = task(beta=0.1)

    def step(t: nn.Module, x: torch.Tensor, target: torch.Tensor, orig: Optional[torch.Tensor]) -> None:
        out = t(x.clone(), target, original=orig)   # Mixup mixes in place: give it a fresh batch
        optimizer.zero_grad(set_to_none=True)
        out['loss'].backward()
        optimizer.step()

    cases = {
        'plain_unsupplemented': lambda: timed(lambda: step(plain, augmented_plain, y_plain, None), device),
        'plain': lambda: timed(lambda: step(plain, augmented, y, None), device),
        'synermix': lambda: timed(lambda: step(synermix, augmented, y, original), device),
    }
    if not strict_size:
        half = task(beta=0.1, original_scale=0.5)
        cases['half_res'] = lambda: timed(lambda: step(half, augmented, y, original), device)
    for k in cfg['every']:
        every = task(beta=0.1, intra_every=k)

        def run_every(every=every, k=k) -> float:
            every.step = 0      # the window holds exactly one intra step and k-1 plain ones
            return timed(lambda: [step(every, augmented, y, original) for _ in range(k)], device) / k
        cases[f'every{k}'] = run_every
    if cfg['overhead_rows']:
        timm_task = ClassificationTask(model, criterion_kwargs=dict(soft_targets=True), verbose=False).train()
        timm_mixup = make_mixup(num_classes)

        def timm_step() -> None:
            x, soft = timm_mixup(augmented.clone(), y)
            out = timm_task(x, soft)
            optimizer.zero_grad(set_to_none=True)
            out['loss'].backward()
            optimizer.step()
        cases['timm'] = lambda: timed(timm_step, device)

        # The same SynerMix step written by hand, without the task (to see what the wrapper adds).
        hand_mixup, soft_ce = make_mixup(num_classes), SoftTargetCrossEntropy()

        def hand_step() -> None:
            x, soft = hand_mixup(augmented.clone(), y)
            logits = model(x)
            features = model.forward_head(model.forward_features(original), pre_logits=True)
            synthesized, synthesized_labels = synthesize_class_features(features, y)
            loss = 0.9 * soft_ce(logits, soft) + 0.1 * F.cross_entropy(
                model.get_classifier()(synthesized), synthesized_labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        cases['hand'] = lambda: timed(hand_step, device)

    # The denominator is measured twice per repeat, apart in the order, and averaged.
    cases['plain_again'] = cases['plain']

    # Components of the extra work, timed in the same interleaved loop.
    dim = pre_logits_dim(model, px, device)
    classifier = model.get_classifier()
    features = torch.randn(n_hat, dim, device=device, requires_grad=True)

    def originals_pass() -> None:
        model.zero_grad(set_to_none=True)
        model.forward_head(model.forward_features(original), pre_logits=True).sum().backward()

    def intra_op() -> None:
        synthesized, synthesized_labels = synthesize_class_features(features, y)
        F.cross_entropy(classifier(synthesized).float(), synthesized_labels).backward()

    def joint_pass() -> None:
        # What one forward over both views stacked would cost (the spec keeps two passes, each with
        # its own BatchNorm statistics; a split-BatchNorm joint pass would cost about this).
        model.zero_grad(set_to_none=True)
        both = torch.cat([augmented, original])
        model.forward_head(model.forward_features(both), pre_logits=True).sum().backward()

    def half_res_originals_pass() -> None:
        model.zero_grad(set_to_none=True)
        small = F.interpolate(original, scale_factor=0.5, mode='bilinear', antialias=True, align_corners=False)
        model.forward_head(model.forward_features(small), pre_logits=True).sum().backward()

    cases['c_originals_pass'] = lambda: timed(originals_pass, device)
    cases['c_intra'] = lambda: timed(intra_op, device)
    if cfg['overhead_rows']:
        cases['c_joint_pass'] = lambda: timed(joint_pass, device)
        if not strict_size:
            cases['c_half_pass'] = lambda: timed(half_res_originals_pass, device)

    if 'step' in sections:
        times = interleave(cases, cfg['repeats'], cfg['warmup'])
        times['plain'] = [(a + b) / 2 for a, b in zip(times['plain'], times.pop('plain_again'))]
        batch_note = f'{model_name} {px}px, {num_classes} classes, batch {n} -> N̂={n_hat}, Mixup elem'
        report.bench(f'step.{row}.synermix_vs_plain', per_repeat(times, 'synermix', 'plain'),
                     f'SynerMixTask(beta=0.1) step / SynerMixTask(beta=0) step, same supplemented batch; '
                     f'{batch_note}; median step {fmt_s(median(times["synermix"]))} vs {fmt_s(median(times["plain"]))}',
                     goal='<=2.05')
        report.bench(f'step.{row}.synermix_vs_unsupplemented', per_repeat(times, 'synermix', 'plain_unsupplemented'),
                     f'SynerMix step on N̂={n_hat} / plain step on the un-supplemented batch of {n} '
                     f'(N̂/N={n_hat / n:.2f}: supplementation alone costs '
                     f'{median(per_repeat(times, "plain", "plain_unsupplemented")):.2f}x in the plain step); {batch_note}')
        if 'half_res' in cases:
            report.bench(f'step.{row}.original_scale_0.5', per_repeat(times, 'half_res', 'plain'),
                         f'SynerMixTask(original_scale=0.5) step / plain step, same batch; {batch_note}', goal='<=1.3')
        else:
            report.note(f'step.{row}.original_scale_0.5 skipped: {model_name} is built with a strict image size '
                        '(SynerMixTask raises for original_scale != 1; use intra_every)')
        for k in cfg['every']:
            report.bench(f'step.{row}.intra_every_{k}', per_repeat(times, f'every{k}', 'plain'),
                         f'mean over {k} consecutive SynerMixTask(intra_every={k}) steps / plain step; {batch_note}',
                         goal='<=1.3')
        if 'timm' in cases:
            report.bench(f'step.{row}.beta0_vs_timm', per_repeat(times, 'plain', 'timm'),
                         f'SynerMixTask(beta=0) step / timm ClassificationTask step (same Mixup, soft-target CE); '
                         f'{batch_note}', goal='<=1.05')
            report.bench(f'step.{row}.synermix_vs_handwritten', per_repeat(times, 'synermix', 'hand'),
                         'SynerMixTask(beta=0.1) step / the same two passes + intra + losses written inline '
                         f'(no task, no wrapper module); {batch_note}', goal='<=1.05')
        # Where the time beyond the plain step goes.
        extra = [s - p for s, p in zip(times['synermix'], times['plain'])]
        t_plain, t_extra = median(times['plain']), median(extra)
        t_pass, t_intra = median(times['c_originals_pass']), median(times['c_intra'])
        implied = [(p + o + i) / p for p, o, i in zip(times['plain'], times['c_originals_pass'], times['c_intra'])]
        report.profile(
            f'step.{row}',
            f'plain {fmt_s(t_plain)}; SynerMix extra {fmt_s(t_extra)} ({t_extra / t_plain:.0%} of plain) = '
            f'originals\' forward+backward {fmt_s(t_pass)} ({t_pass / t_plain:.0%}) + intra op fwd+bwd '
            f'{fmt_s(t_intra)} ({t_intra / t_plain:.2%}) + rest {fmt_s(t_extra - t_pass - t_intra)} '
            f'(noise, BatchNorm of a 2nd pass, grad accumulation); ratio implied by the parts '
            f'{median(implied):.2f}x (medians)')
        if 'c_half_pass' in times:
            report.bench(f'step.{row}.half_res_pass_vs_full_res_pass',
                         per_repeat(times, 'c_half_pass', 'c_originals_pass'),
                         f'forward+backward of the originals at {px // 2}px (with the antialiased resize) / at '
                         f'{px}px: what original_scale=0.5 can save on this model and size (0.25 = ideal); '
                         f'{batch_note}')
        if 'c_joint_pass' in times:
            report.bench(f'step.{row}.joint_pass_vs_two_passes',
                         [j / (2 * o) for j, o in zip(times['c_joint_pass'], times['c_originals_pass'])],
                         'forward+backward of one pass over both views stacked (2N̂) / twice that of one view '
                         '(N̂): what batching the originals with the augmented view would save (1.0 = nothing); '
                         f'{batch_note}')
        report.bench(f'intra.share_of_step.{row}', per_repeat(times, 'c_intra', 'synermix'),
                     f'intra op (synthesize_class_features + classifier + CE, forward+backward, '
                     f'{len(torch.unique(y))} classes, D={dim}) / full SynerMix step; {batch_note}', goal='<0.01')

    if 'memory' in sections:
        def plain_step() -> None:
            step(plain, augmented.clone(), y, None)

        def synermix_step() -> None:
            step(synermix, augmented.clone(), y, original.clone())   # its input batch holds both views

        plain_step(), synermix_step()   # gradients, optimizer state exist before the measured step
        peak_plain = peak_step_memory(plain_step, device)
        peak_synermix = peak_step_memory(synermix_step, device)
        how = ('torch.cuda.max_memory_allocated' if device.type == 'cuda' else
               'tensor storages tracked by a TorchDispatchMode (not RSS)')
        report.bench(f'memory.{row}', [peak_synermix / peak_plain],
                     f'peak tensor bytes of a SynerMix step / plain step above weights+optimizer state, same '
                     f'batch N̂={n_hat}: {peak_synermix / 2 ** 20:.1f} MiB vs {peak_plain / 2 ** 20:.1f} MiB; '
                     f'{how}; deterministic, one measurement', goal='<=2')


# --------------------------------------------------------------------------------------------
# One batch shape, paired batches, joint pass, host syncs, vectorised mixup

def cifar100_like_labels() -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(100), 500))


def bench_shapes(report: Report) -> None:
    """Distinct batch sizes in one epoch of CIFAR-100-like labels at -b 32, per batch mode."""
    labels = cifar100_like_labels()
    supplemented = SupplementedBatchSampler(labels, 32, seed=0)
    samplers = {
        'supplemented': supplemented,
        'fixed': SupplementedBatchSampler(labels, 32, seed=0, fixed_size=supplemented.suggest_fixed_size()),
        'paired': PairedBatchSampler(labels, 32, seed=0),
    }
    for mode, sampler in samplers.items():
        sampler.set_epoch(0)
        sizes = [len(b) for b in sampler]
        report.bench(f'shapes.{mode}.batch_sizes_per_epoch', [len(set(sizes))],
                     f'distinct batch sizes in one epoch, 100 classes x 500 labels, -b 32: sizes '
                     f'{min(sizes)}-{max(sizes)}, mean {np.mean(sizes):.1f}, {len(sizes)} batches',
                     goal=None if mode == 'supplemented' else '<=1')


class HostSyncCounter:
    """Counts the tensor calls that make the host wait for the device (item, tolist, cpu, numpy, bool, ...)."""

    NAMES = {'item', 'tolist', 'cpu', 'numpy', '__bool__', '__float__', '__int__', '__index__', 'unique', 'nonzero',
             '_unique', '_unique2', 'unique_consecutive', 'masked_select'}

    def __new__(cls):
        from torch.overrides import TorchFunctionMode

        class _Mode(TorchFunctionMode):
            def __init__(self):
                super().__init__()
                self.calls = []

            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = getattr(func, '__name__', str(func))
                if name in HostSyncCounter.NAMES:
                    self.calls.append(name)
                return func(*args, **(kwargs or {}))
        return _Mode()


def bench_syncs(report: Report, cfg: dict, device: torch.device) -> None:
    """Host syncs in the trainer's hot path: a SynerMix step with MixUp (elem) plus the loss meters' update."""
    from timm_synermix.trainer.state import LossMeters
    model = timm.create_model('resnet10t', num_classes=cfg['num_classes']).to(device)
    task = create_synermix_task(model, 'synermix', num_classes=cfg['num_classes'], mixup_mode='elem',
                                label_smoothing=0.0, verbose=False).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    meters = LossMeters(device)
    labels = cifar100_like_labels() % cfg['num_classes']
    sampler = PairedBatchSampler(labels, cfg['batch'], seed=0)
    sampler.set_epoch(0)
    batches = iter(sampler)
    counts = []
    for step in range(3):
        y = torch.as_tensor(labels[next(batches)], device=device)
        views = TwoViews(torch.randn(len(y), 3, 32, 32, device=device), torch.randn(len(y), 3, 32, 32, device=device))
        with HostSyncCounter() as counter:
            out = task(views, y)
            out['loss'].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            meters.update(out['loss'], out['loss_intra'], out['loss_inter'], len(y), out['with_intra'], step,
                          out['image_passes'])
        if step:   # the first step reads the targets' range once
            counts.append(len(counter.calls))
    report.bench('syncs.per_step', counts, 'host-sync tensor calls (item/tolist/cpu/numpy/bool/float/int/unique/'
                 'nonzero) counted by a TorchFunctionMode in a SynerMix training step (paired batch, MixUp elem, '
                 'forward, backward, SGD step, loss meters); steps after the first', goal='<=0')


def bench_mixup(report: Report, cfg: dict, device: torch.device) -> None:
    """timm_synermix.Mixup (vectorised elem mode) vs timm's Mixup, same draws, batch 256."""
    from timm.data import Mixup as TimmMixup
    kwargs = dict(mixup_alpha=1.0, cutmix_alpha=1.0, mode='elem', label_smoothing=0.0, num_classes=100)
    ours, theirs = Mixup(**kwargs), TimmMixup(**kwargs)
    x = torch.randn(256, 3, 64, 64, device=device)
    y = torch.randint(0, 100, (256,), device=device)

    def run(mixup) -> Callable[[], float]:
        def once() -> float:
            np.random.seed(0)
            batch = x.clone()
            return timed(lambda: mixup(batch, y), device)
        return once
    times = interleave({'ours': run(ours), 'timm': run(theirs)}, cfg['repeats'] * 2, cfg['warmup'])
    report.bench('mixup.elem_vectorised_vs_timm', per_repeat(times, 'timm', 'ours'),
                 f'timm Mixup(mode=elem, MixUp+CutMix) / ours, same numpy draws, batch 256 x 3x64x64 '
                 f'(speed-up; >1 is faster); median ours {fmt_s(median(times["ours"]))}', goal='>1')


def bench_paired(report: Report, spec, cfg: dict, device: torch.device) -> None:
    """Paired and supplemented SynerMix steps against a plain timm step at the same -b; joint vs two passes."""
    row, model_name, px, kwargs = spec
    num_classes, b = cfg['num_classes'], cfg['batch']
    labels = cifar100_like_labels() % num_classes
    paired = torch.as_tensor(labels[next(iter(PairedBatchSampler(labels, b, seed=0)))], device=device)
    plain_y = torch.as_tensor(labels[next(iter(SupplementedBatchSampler(labels, b, seed=0, supplement=False)))],
                              device=device)
    supplemented = torch.as_tensor(labels[next(iter(SupplementedBatchSampler(labels, b, seed=0)))], device=device)
    gen = torch.Generator().manual_seed(0)
    images = {n: torch.randn(n, 3, px, px, generator=gen).to(device) for n in {b, len(supplemented)}}
    model = timm.create_model(model_name, num_classes=num_classes, **kwargs).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    timm_task = ClassificationTask(model, criterion_kwargs=dict(soft_targets=True), verbose=False).train()
    from timm.data import Mixup as TimmMixup
    timm_mixup = TimmMixup(mixup_alpha=1.0, mode='elem', label_smoothing=0.0, num_classes=num_classes)

    def synermix(joint: str) -> SynerMixTask:
        return create_synermix_task(model, 'synermix', num_classes=num_classes, mixup_mode='elem',
                                    label_smoothing=0.0, joint_pass=joint, verbose=False).train()
    tasks = {'auto': synermix('auto'), 'never': synermix('never')}

    def step(fn) -> Callable[[], float]:
        def once() -> float:
            def work() -> None:
                out = fn()
                optimizer.zero_grad(set_to_none=True)
                out['loss'].backward()
                optimizer.step()
            return timed(work, device)
        return once

    def synermix_step(y, joint='auto'):
        x = images[len(y)]
        return lambda: tasks[joint](TwoViews(x, x.clone()), y)
    cases = {
        'timm_plain': step(lambda: timm_task(*timm_mixup(images[b].clone(), plain_y))),
        'paired': step(synermix_step(paired)),
        'supplemented': step(synermix_step(supplemented)),
    }
    exact = not batch_dependent_layers(model)
    if exact:
        cases['paired_two_pass'] = step(synermix_step(paired, 'never'))
    times = interleave(cases, cfg['repeats'], cfg['warmup'])
    note = f'{model_name} {px}px, {num_classes} classes, -b {b}, MixUp elem, task default joint_pass=auto'
    report.bench(f'step.{row}.paired_vs_plain_run', per_repeat(times, 'paired', 'timm_plain'),
                 f'SynerMix step on a paired batch of {b} / timm ClassificationTask + timm Mixup step on {b}; {note}',
                 goal='<=2.05')
    report.bench(f'step.{row}.supplemented_vs_plain_run', per_repeat(times, 'supplemented', 'timm_plain'),
                 f'SynerMix step on the supplemented batch ({b} -> {len(supplemented)}) / the same plain timm step; '
                 f'{note}')
    if exact:
        report.bench(f'step.{row}.joint_vs_two_pass', per_repeat(times, 'paired', 'paired_two_pass'),
                     f'SynerMix step with both views in one forward / two passes (exact here: no BatchNorm in '
                     f'train mode); {note}', goal='<1')
    else:
        report.note(f'step.{row}.joint_vs_two_pass: not exact for {model_name} (BatchNorm in train mode), so not '
                    f'the default; joint_pass="shared-bn" offers it with shared batch statistics')

    def plain_once() -> None:
        step(lambda: timm_task(*timm_mixup(images[b].clone(), plain_y)))()

    def paired_once() -> None:
        step(synermix_step(paired))()
    plain_once(), paired_once()
    peak_plain, peak_paired = peak_step_memory(plain_once, device), peak_step_memory(paired_once, device)
    report.bench(f'memory.{row}.paired_vs_plain_run', [peak_paired / peak_plain],
                 f'peak tensor bytes of a paired SynerMix step / a plain timm step at -b {b}: '
                 f'{peak_paired / 2 ** 20:.1f} MiB vs {peak_plain / 2 ** 20:.1f} MiB', goal='<=2')


# --------------------------------------------------------------------------------------------
# Intra op vs the authors' per-class loop

def intra_loop(features: torch.Tensor, labels: torch.Tensor):
    """The authors' official form: a Python loop over labels.unique()."""
    synthesized, classes = [], []
    for c in labels.unique():
        members = features[labels == c]
        w = torch.rand(members.shape[0], device=features.device)
        w = w / w.sum()
        synthesized.append((w[:, None] * members).sum(0))
        classes.append(c)
    return torch.stack(synthesized), torch.stack(classes)


def bench_intra(report: Report, cfg: dict, device: torch.device) -> None:
    dim, per_class, block = 512, 2, cfg['intra_block']
    for num_classes in (10, 100, 257):
        gen = torch.Generator().manual_seed(num_classes)
        labels = torch.arange(num_classes).repeat(per_class)[torch.randperm(num_classes * per_class, generator=gen)]
        labels = labels.to(device)
        features = torch.randn(labels.numel(), dim, generator=gen).to(device).requires_grad_()
        classifier = nn.Linear(dim, num_classes).to(device)

        def run(synthesize, head: bool = True) -> Callable[[], float]:
            def once() -> None:
                synthesized, synthesized_labels = synthesize(features, labels)
                if head:
                    F.cross_entropy(classifier(synthesized).float(), synthesized_labels).backward()
                else:
                    synthesized.sum().backward()
            return lambda: timed(lambda: [once() for _ in range(block)], device) / block

        cases = {'vectorized': run(synthesize_class_features), 'loop': run(intra_loop)}
        if num_classes == 257:
            cases.update(vectorized_synth=run(synthesize_class_features, False), loop_synth=run(intra_loop, False))
        times = interleave(cases, cfg['intra_repeats'], 1)
        report.bench(f'intra.vs_loop.{num_classes}_classes', per_repeat(times, 'loop', 'vectorized'),
                     f'speedup: per-class Python loop / synthesize_class_features, each + classifier + CE, '
                     f'forward+backward, {num_classes} classes x {per_class} samples, D={dim}; '
                     f'{fmt_s(median(times["vectorized"]))} vs {fmt_s(median(times["loop"]))} per call',
                     goal='>=20' if num_classes == 257 else None)
        if 'loop_synth' in times:
            report.bench(f'intra.vs_loop.{num_classes}_classes.synthesis_only',
                         per_repeat(times, 'loop_synth', 'vectorized_synth'),
                         f'speedup of the synthesis alone (no classifier/CE; backward of sum), same data; '
                         f'{fmt_s(median(times["vectorized_synth"]))} vs {fmt_s(median(times["loop_synth"]))} per call')


# --------------------------------------------------------------------------------------------
# Sampler

def naive_batches(labels: np.ndarray, batch_size: int, num_batches: int, rng: np.random.Generator) -> float:
    """The naive supplementing sampler: rescan all labels for every lonely class of every batch."""
    start = clock()
    order = rng.permutation(labels.size)
    for b in range(num_batches):
        batch = order[b * batch_size:(b + 1) * batch_size]
        batch_labels = labels[batch]
        classes, counts = np.unique(batch_labels, return_counts=True)
        extra = []
        for c in classes[counts == 1]:
            members = np.flatnonzero(labels == c)
            members = members[~np.isin(members, batch)]
            extra.append(rng.choice(members))
        out = np.concatenate([batch, np.asarray(extra, dtype=batch.dtype)])
        rng.shuffle(out)
        out.tolist()
    return clock() - start


def bench_sampler(report: Report, cfg: dict) -> None:
    num_labels, num_classes, batch_size, naive_count, repeats = cfg['sampler']
    labels = np.random.default_rng(0).integers(0, num_classes, num_labels)

    def ours(supplement: bool) -> Callable[[], float]:
        def run() -> float:
            start = clock()
            sampler = SupplementedBatchSampler(labels, batch_size, seed=0, supplement=supplement)
            built = clock()
            for _ in sampler:
                pass
            end = clock()
            run.parts.append((built - start, end - built, len(sampler)))
            return end - start
        run.parts = []
        return run

    supplemented, plain = ours(True), ours(False)
    num_batches = num_labels // batch_size
    naive_rng = np.random.default_rng(1)
    times = interleave({
        'ours': supplemented,
        'plain': plain,
        'naive': lambda: naive_batches(labels, batch_size, naive_count, naive_rng) / naive_count * num_batches,
    }, repeats, 0)
    build = median([p[0] for p in supplemented.parts])
    epoch = median([p[1] for p in supplemented.parts])
    report.bench('sampler.vs_naive', per_repeat(times, 'naive', 'ours'),
                 f'speedup: naive rescan epoch (np.flatnonzero(labels == c) per lonely class; timed on '
                 f'{naive_count} batches, extrapolated to {num_batches}: {fmt_s(median(times["naive"]))}) / '
                 f'SupplementedBatchSampler construction {fmt_s(build)} + epoch {fmt_s(epoch)} '
                 f'({epoch / num_batches * 1e6:.0f} us/batch); {num_labels:,} labels, {num_classes:,} classes, '
                 f'batch {batch_size}', goal='>=10')
    report.bench('sampler.vs_plain_batches', per_repeat(times, 'ours', 'plain'),
                 'SupplementedBatchSampler (construction + epoch) / the same sampler with supplement=False '
                 '(plain shuffled batches, same sharding)')


# --------------------------------------------------------------------------------------------
# Loader

class DecodeTwiceDataset(TwoViewDataset):
    """Two views the naive way: the image file is opened and decoded once per view."""

    def __getitem__(self, index: int):
        image, target = self.dataset[index]
        image_again, _ = self.dataset[index]
        return TwoViews(self.original_transform(image), self.transform(image_again)), target


def write_images(root: str, count: int, ext: str, size: int = 128, classes: int = 8) -> None:
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = os.path.join(root, f'class{i % classes}')
        os.makedirs(folder, exist_ok=True)
        # Smooth random images (upsampled noise + gradient) so compression behaves like photos.
        small = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        image = small.resize((size, size), Image.BICUBIC)
        image.save(os.path.join(folder, f'{i}.{ext}'), **({'quality': 90} if ext == 'jpg' else {}))


def bench_loader(report: Report, cfg: dict) -> None:
    from timm.data import create_dataset
    px, batch_size, count = 64, 32, cfg['images']
    for ext, label in (('png', 'PNG'), ('jpg', 'JPEG')):
        with tempfile.TemporaryDirectory(prefix='synermix_bench_') as root:
            write_images(root, count, ext)

            def loader(kind: str):
                dataset = create_dataset('', root=root)
                if kind == 'twice':
                    dataset = DecodeTwiceDataset(dataset)
                sampler = SupplementedBatchSampler(
                    dataset_labels(dataset), batch_size, drop_last=False, shuffle=False, supplement=False)
                return create_synermix_loader(
                    dataset, (3, px, px), sampler, two_views=kind != 'one', use_prefetcher=True,
                    device=torch.device('cpu'), num_workers=0)

            loaders = {kind: loader(kind) for kind in ('one', 'two', 'twice')}

            def run(kind: str) -> Callable[[], float]:
                def once() -> float:
                    start = clock()
                    seen = 0
                    for _, target in loaders[kind]:
                        seen += target.numel()
                    assert seen == count, (kind, seen)
                    return clock() - start
                return once

            times = interleave({k: run(k) for k in loaders}, cfg['loader_repeats'], 1)
            rate = {k: count / median(v) for k, v in times.items()}
            where = (f'{count} {label} files 128x128 -> {px}px, timm create_transform (train: RandomResizedCrop, '
                     f'flip, ColorJitter; original: eval resize+crop), create_synermix_loader (timm fast_collate + '
                     f'PrefetchLoader, normalising on the CPU here), batch {batch_size}, num_workers=0')
            report.bench(f'loader.{ext}.two_views_vs_one_view', per_repeat(times, 'one', 'two'),
                         f'images/s of TwoViewDataset (decode once, two transforms) / one-view dataset: '
                         f'{rate["two"]:.0f} vs {rate["one"]:.0f} img/s; {where}', goal='>=0.8')
            report.bench(f'loader.{ext}.two_views_vs_decode_twice', per_repeat(times, 'twice', 'two'),
                         f'images/s of TwoViewDataset / a dataset that opens and decodes the file once per view: '
                         f'{rate["two"]:.0f} vs {rate["twice"]:.0f} img/s; {where}')


# --------------------------------------------------------------------------------------------

def main(argv: Optional[Sequence[str]] = None) -> int:
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
    args = parser.parse_args(argv)

    preset = 'smoke' if args.smoke else 'quick' if args.quick else 'full'
    cfg = dict(PRESETS[preset])
    if args.repeats:
        cfg['repeats'] = args.repeats
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    torch.set_num_threads(args.threads)
    global clock
    clock_name = args.clock or ('wall' if device.type == 'cuda' else 'cpu')
    clock = CLOCK[clock_name]
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
    sections = args.only
    if 'step' in sections or 'memory' in sections:
        for spec in MODELS[cfg['models']]:
            bench_model_steps(report, spec, cfg, device, sections)
    if 'paired' in sections:
        for spec in MODELS[cfg['models']]:
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

    elapsed = time.perf_counter() - started
    table = report.summary()
    print(f'\n## Summary ({preset}, device={device}, {elapsed:.0f} s)\n\n{table}', flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            f.write('\n'.join(report.lines) + f'\n\n## Summary ({preset}, device={device}, {elapsed:.0f} s)\n\n'
                    + table + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
