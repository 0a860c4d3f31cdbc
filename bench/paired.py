"""Section `paired`: paired and supplemented SynerMix steps against a plain timm step at the same -b.

Also one forward over both views (the task's default where it is exact) against two passes, and the peak memory
of a paired step against the plain timm step.
"""
from typing import Callable

import torch

import timm
from timm.task import ClassificationTask

from timm_synermix import PairedBatchSampler, SupplementedBatchSampler, TwoViews, create_synermix_task
from timm_synermix.method.task import batch_dependent_layers

from .harness import Report, backward_and_step, bench_optimizer, cifar100_like_labels, interleave, \
    peak_step_memory, per_repeat, timed


class PairedBench:
    """One model of MODELS, the first batch of each batch mode, and the timm step the modes are compared with."""

    def __init__(self, spec, cfg: dict, device: torch.device):
        from timm.data import Mixup as TimmMixup
        self.row, self.model_name, self.px, kwargs = spec
        self.num_classes, self.b, self.device = cfg['num_classes'], cfg['batch'], device
        labels = cifar100_like_labels() % self.num_classes

        def first(sampler) -> torch.Tensor:
            return torch.as_tensor(labels[next(iter(sampler))], device=device)
        self.paired = first(PairedBatchSampler(labels, self.b, seed=0))
        self.plain_y = first(SupplementedBatchSampler(labels, self.b, seed=0, supplement=False))
        self.supplemented = first(SupplementedBatchSampler(labels, self.b, seed=0))
        gen = torch.Generator().manual_seed(0)
        self.images = {n: torch.randn(n, 3, self.px, self.px, generator=gen).to(device)
                       for n in {self.b, len(self.supplemented)}}
        self.model = timm.create_model(self.model_name, num_classes=self.num_classes, **kwargs).to(device).train()
        self.optimizer = bench_optimizer(self.model)
        self.timm_task = ClassificationTask(self.model, criterion_kwargs=dict(soft_targets=True), verbose=False)
        self.timm_task.train()
        self.timm_mixup = TimmMixup(mixup_alpha=1.0, mode='elem', label_smoothing=0.0, num_classes=self.num_classes)
        self.tasks = {joint: self.synermix_task(joint) for joint in ('auto', 'never')}
        # a joint pass over both views equals two passes only without batch statistics shared across the views
        self.exact = not batch_dependent_layers(self.model)

    def synermix_task(self, joint: str):
        return create_synermix_task(self.model, 'synermix', num_classes=self.num_classes, mixup_mode='elem',
                                    label_smoothing=0.0, joint_pass=joint, verbose=False).train()

    def step(self, forward: Callable[[], dict]) -> Callable[[], None]:
        return lambda: backward_and_step(self.optimizer, forward()['loss'])

    def timm_plain(self) -> Callable[[], None]:
        return self.step(lambda: self.timm_task(*self.timm_mixup(self.images[self.b].clone(), self.plain_y)))

    def synermix(self, y: torch.Tensor, joint: str = 'auto') -> Callable[[], None]:
        x = self.images[len(y)]
        return self.step(lambda: self.tasks[joint](TwoViews(x, x.clone()), y))


def bench_paired(report: Report, spec, cfg: dict, device: torch.device) -> None:
    """Paired and supplemented SynerMix steps against a plain timm step at the same -b; joint vs two passes."""
    p = PairedBench(spec, cfg, device)
    steps = {'timm_plain': p.timm_plain(), 'paired': p.synermix(p.paired), 'supplemented': p.synermix(p.supplemented)}
    if p.exact:
        steps['paired_two_pass'] = p.synermix(p.paired, 'never')
    times = interleave({name: (lambda fn=fn: timed(fn, device)) for name, fn in steps.items()},
                       cfg['repeats'], cfg['warmup'])
    row, b = p.row, p.b
    note = f'{p.model_name} {p.px}px, {p.num_classes} classes, -b {b}, MixUp elem, task default joint_pass=auto'
    report.bench(f'step.{row}.paired_vs_plain_run', per_repeat(times, 'paired', 'timm_plain'),
                 f'SynerMix step on a paired batch of {b} / timm ClassificationTask + timm Mixup step on {b}; {note}',
                 goal='<=2.05')
    report.bench(f'step.{row}.supplemented_vs_plain_run', per_repeat(times, 'supplemented', 'timm_plain'),
                 f'SynerMix step on the supplemented batch ({b} -> {len(p.supplemented)}) / the same plain timm '
                 f'step; {note}')
    if p.exact:
        report.bench(f'step.{row}.joint_vs_two_pass', per_repeat(times, 'paired', 'paired_two_pass'),
                     f'SynerMix step with both views in one forward / two passes (exact here: no BatchNorm in '
                     f'train mode); {note}', goal='<1')
    else:
        report.note(f'step.{row}.joint_vs_two_pass: not exact for {p.model_name} (BatchNorm in train mode), so not '
                    f'the default; joint_pass="shared-bn" offers it with shared batch statistics')
    bench_paired_memory(report, p, steps)


def bench_paired_memory(report: Report, p: PairedBench, steps: dict) -> None:
    steps['timm_plain'](), steps['paired']()   # gradients, optimizer state exist before the measured step
    peak_plain = peak_step_memory(steps['timm_plain'], p.device)
    peak_paired = peak_step_memory(steps['paired'], p.device)
    report.bench(f'memory.{p.row}.paired_vs_plain_run', [peak_paired / peak_plain],
                 f'peak tensor bytes of a paired SynerMix step / a plain timm step at -b {p.b}: '
                 f'{peak_paired / 2 ** 20:.1f} MiB vs {peak_plain / 2 ** 20:.1f} MiB', goal='<=2')
