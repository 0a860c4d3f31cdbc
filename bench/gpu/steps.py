"""Section `step` of `make gpu-check`: step time, images/s and peak memory per batch mode, and the batch sizes.

Plain MixUp on plain batches against SynerMix and MixUp (beta=0) on paired, fixed and supplemented batches, timed
side by side with bench/harness.py's interleaved repeats.
"""
import contextlib

import numpy as np
import torch

import timm
from timm_synermix import PairedBatchSampler, SupplementedBatchSampler, TwoViews, create_synermix_task

from ..harness import backward_and_step, bench_optimizer, interleave, median, peak_step_memory, per_repeat, timed
from .rows import Rows

MODES = ('plain', 'paired', 'fixed', 'supplemented')


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
        backward_and_step(self.optimizer, out['loss'])

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
    optimizer = bench_optimizer(model)

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
    """All rows of the section; returns the steppers, for the syncs section to reuse."""
    report_batch_sizes(report, cfg)
    steppers = setup_steps(cfg, device)
    setting = (f'{cfg["model"]} {cfg["px"]}px, -b {cfg["batch"]}, {cfg["classes"]} classes, '
               f'{"AMP bf16, channels_last" if cfg["amp"] else "fp32"}, SGD, {cfg["batches"]} batches per timed block '
               f'(all sizes seen in warm-up), {device.type}')
    report_step_times(report, cfg, steppers, device, setting)
    report_peak_memory(report, steppers, device, setting)
    return steppers


def report_batch_sizes(report: Rows, cfg) -> None:
    labels, samplers = samplers_for(cfg, cfg['batch'])
    for mode, sampler in samplers.items():
        sampler.set_epoch(0)
        sizes = [len(b) for _, b in zip(range(cfg['shape_batches']), sampler)]
        report.value(f'shapes.{mode}.distinct_batch_sizes', 'count', [len(set(sizes))],
                     f'{cfg["classes"]} classes x {cfg["per_class"]}, -b {cfg["batch"]}, first {len(sizes)} batches of '
                     f'epoch 0: sizes {min(sizes)}-{max(sizes)}, mean {np.mean(sizes):.1f}')


def report_step_times(report: Rows, cfg, steppers, device, setting: str) -> None:
    times = interleave({name: (lambda s=s: timed(s.block, device)) for name, s in steppers.items()},
                       cfg['repeats'], cfg['warmup'])
    for name, s in steppers.items():
        images = sum(y.numel() for y in s.batches)
        step_ms = [t / len(s.batches) * 1e3 for t in times[name]]
        rate = [images / t for t in times[name]]
        epoch_rate = [cfg['batch'] * len(s.batches) / t for t in times[name]]
        report.value(f'step.{name}', 'ms', step_ms, f'one training step, {images / len(s.batches):.1f} images '
                     f'per batch; {setting}')
        report.value(f'img_per_s.{name}', 'img_s', rate,
                     f'batch images per second (originals not counted); epoch throughput '
                     f'{median(epoch_rate):.0f} -b images/s (every mode has the same batches per epoch); {setting}')
    for mode in MODES[1:]:
        report.ratio(f'ratio.synermix_vs_plain.{mode}', per_repeat(times, f'synermix_{mode}', 'plain'),
                     f'SynerMix step on {mode} batches / plain MixUp step on plain batches of {cfg["batch"]} '
                     f'(= epoch time ratio); {setting}')
        report.ratio(f'ratio.synermix_vs_mixup_same_batch.{mode}',
                     per_repeat(times, f'synermix_{mode}', f'mixup_{mode}'),
                     f'SynerMix step / MixUp step (beta=0) on the same {mode} batches; {setting}')


def report_peak_memory(report: Rows, steppers, device, setting: str) -> None:
    peaks = {}
    for name, s in steppers.items():
        above = peak_step_memory(s.block, device)
        absolute = torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else None
        peaks[name] = absolute or above
        how = (f'torch.cuda.max_memory_allocated over one block, {above / 2 ** 30:.2f} GiB above weights, grads and '
               'optimizer state' if absolute else 'tensor storages above weights (bench/harness.py PeakTensorMemory)')
        report.value(f'memory.{name}', 'GiB', [peaks[name] / 2 ** 30], f'peak memory: {how}; {setting}')
    for mode in MODES[1:]:
        report.ratio(f'memory.synermix_vs_plain.{mode}', [peaks[f'synermix_{mode}'] / peaks['plain']],
                     f'peak memory of SynerMix on {mode} batches / plain MixUp on plain batches; {setting}')
