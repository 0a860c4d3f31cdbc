"""Section `step`: a full SynerMix training step against the plain one, cheap modes, and where the extra time goes.

Forward, backward and optimizer.step of SynerMixTask vs the plain task (beta=0) on the same supplemented batch and
on the un-supplemented one; the cheap modes (original_scale=0.5, intra_every=k); SynerMixTask(beta=0) vs timm's own
ClassificationTask and vs the same step written by hand; the parts of the extra time, timed in the same loop.
"""
from typing import Callable, Dict, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import timm
from timm.loss import SoftTargetCrossEntropy
from timm.task import ClassificationTask

from timm_synermix import Mixup, SupplementedBatchSampler, SynerMixTask, create_synermix_task, \
    synthesize_class_features

from .harness import Report, backward_and_step, bench_optimizer, fmt_s, interleave, median, per_repeat, timed


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


class StepBench:
    """One model of MODELS with its optimizer and batches: every variant trains the same weights (same parameter
    count, same optimizer state), so the step and memory sections compare the work alone."""

    def __init__(self, spec, cfg: dict, device: torch.device):
        self.row, self.model_name, self.px, kwargs = spec
        self.num_classes, self.device = cfg['num_classes'], device
        y_plain, y = realistic_batches(self.num_classes, 500, cfg['batch'])
        self.y_plain, self.y = y_plain.to(device), y.to(device)
        self.n, self.n_hat = self.y_plain.numel(), self.y.numel()
        gen = torch.Generator().manual_seed(0)
        self.augmented = torch.randn(self.n_hat, 3, self.px, self.px, generator=gen).to(device)
        self.original = torch.randn(self.n_hat, 3, self.px, self.px, generator=gen).to(device)
        self.augmented_plain = torch.randn(self.n, 3, self.px, self.px, generator=gen).to(device)
        self.model = timm.create_model(self.model_name, num_classes=self.num_classes, **kwargs).to(device)
        self.model.train()
        self.optimizer = bench_optimizer(self.model)
        self.strict_size = getattr(getattr(self.model, 'patch_embed', None), 'strict_img_size', False)
        self.dim = pre_logits_dim(self.model, self.px, device)
        self.plain = self.task('mixup')
        self.synermix = self.task(beta=0.1)
        self.batch_note = (f'{self.model_name} {self.px}px, {self.num_classes} classes, batch {self.n} -> '
                           f'N̂={self.n_hat}, Mixup elem')

    def task(self, method: str = 'synermix', **kw) -> SynerMixTask:
        # the paper's presets with the bench's mixup (elem mode, no smoothing): MixUp with or without SynerMix
        return create_synermix_task(self.model, method, num_classes=self.num_classes, mixup_mode='elem',
                                    label_smoothing=0.0, verbose=False, **kw).train()

    def step(self, task: nn.Module, x: torch.Tensor, target: torch.Tensor, orig: Optional[torch.Tensor]) -> None:
        out = task(x.clone(), target, original=orig)   # Mixup mixes in place: give it a fresh batch
        backward_and_step(self.optimizer, out['loss'])

    def timed(self, fn: Callable[[], None]) -> Callable[[], float]:
        return lambda: timed(fn, self.device)


def variant_cases(s: StepBench, cfg: dict) -> Dict[str, Callable[[], float]]:
    """The task's own variants: plain on both batches, SynerMix, and its cheap modes."""
    cases = {
        'plain_unsupplemented': s.timed(lambda: s.step(s.plain, s.augmented_plain, s.y_plain, None)),
        'plain': s.timed(lambda: s.step(s.plain, s.augmented, s.y, None)),
        'synermix': s.timed(lambda: s.step(s.synermix, s.augmented, s.y, s.original)),
    }
    if not s.strict_size:
        half = s.task(beta=0.1, original_scale=0.5)
        cases['half_res'] = s.timed(lambda: s.step(half, s.augmented, s.y, s.original))
    for k in cfg['every']:
        every = s.task(beta=0.1, intra_every=k)

        def run_every(every=every, k=k) -> float:
            every.step = 0      # the window holds exactly one intra step and k-1 plain ones
            return timed(lambda: [s.step(every, s.augmented, s.y, s.original) for _ in range(k)], s.device) / k
        cases[f'every{k}'] = run_every
    return cases


def overhead_cases(s: StepBench) -> Dict[str, Callable[[], float]]:
    """What the task adds: timm's ClassificationTask step, and the SynerMix step written inline without a task."""
    timm_task = ClassificationTask(s.model, criterion_kwargs=dict(soft_targets=True), verbose=False).train()
    timm_mixup = make_mixup(s.num_classes)

    def timm_step() -> None:
        x, soft = timm_mixup(s.augmented.clone(), s.y)
        backward_and_step(s.optimizer, timm_task(x, soft)['loss'])

    hand_mixup, soft_ce = make_mixup(s.num_classes), SoftTargetCrossEntropy()

    def hand_step() -> None:
        x, soft = hand_mixup(s.augmented.clone(), s.y)
        logits = s.model(x)
        features = s.model.forward_head(s.model.forward_features(s.original), pre_logits=True)
        synthesized, synthesized_labels = synthesize_class_features(features, s.y)
        loss = 0.9 * soft_ce(logits, soft) + 0.1 * F.cross_entropy(
            s.model.get_classifier()(synthesized), synthesized_labels)
        backward_and_step(s.optimizer, loss)
    return {'timm': s.timed(timm_step), 'hand': s.timed(hand_step)}


def component_cases(s: StepBench, cfg: dict) -> Dict[str, Callable[[], float]]:
    """Parts of the extra work, timed in the same interleaved loop as the steps they explain."""
    model, classifier = s.model, s.model.get_classifier()
    features = torch.randn(s.n_hat, s.dim, device=s.device, requires_grad=True)

    def originals_pass() -> None:
        model.zero_grad(set_to_none=True)
        model.forward_head(model.forward_features(s.original), pre_logits=True).sum().backward()

    def intra_op() -> None:
        synthesized, synthesized_labels = synthesize_class_features(features, s.y)
        F.cross_entropy(classifier(synthesized).float(), synthesized_labels).backward()

    def joint_pass() -> None:
        # What one forward over both views stacked would cost (the spec keeps two passes, each with
        # its own BatchNorm statistics; a split-BatchNorm joint pass would cost about this).
        model.zero_grad(set_to_none=True)
        both = torch.cat([s.augmented, s.original])
        model.forward_head(model.forward_features(both), pre_logits=True).sum().backward()

    def half_res_originals_pass() -> None:
        model.zero_grad(set_to_none=True)
        small = F.interpolate(s.original, scale_factor=0.5, mode='bilinear', antialias=True, align_corners=False)
        model.forward_head(model.forward_features(small), pre_logits=True).sum().backward()

    cases = {'c_originals_pass': s.timed(originals_pass), 'c_intra': s.timed(intra_op)}
    if cfg['overhead_rows']:
        cases['c_joint_pass'] = s.timed(joint_pass)
        if not s.strict_size:
            cases['c_half_pass'] = s.timed(half_res_originals_pass)
    return cases


def bench_steps(report: Report, s: StepBench, cfg: dict) -> None:
    cases = variant_cases(s, cfg)
    if cfg['overhead_rows']:
        cases.update(overhead_cases(s))
    # The denominator is measured twice per repeat, apart in the order, and averaged.
    cases['plain_again'] = cases['plain']
    cases.update(component_cases(s, cfg))
    times = interleave(cases, cfg['repeats'], cfg['warmup'])
    times['plain'] = [(a + b) / 2 for a, b in zip(times['plain'], times.pop('plain_again'))]
    report_step_ratios(report, s, cfg, times)
    report_where_time_goes(report, s, times)


def report_step_ratios(report: Report, s: StepBench, cfg: dict, times: dict) -> None:
    row, note = s.row, s.batch_note
    report.bench(f'step.{row}.synermix_vs_plain', per_repeat(times, 'synermix', 'plain'),
                 f'SynerMixTask(beta=0.1) step / SynerMixTask(beta=0) step, same supplemented batch; '
                 f'{note}; median step {fmt_s(median(times["synermix"]))} vs {fmt_s(median(times["plain"]))}',
                 goal='<=2.05')
    report.bench(f'step.{row}.synermix_vs_unsupplemented', per_repeat(times, 'synermix', 'plain_unsupplemented'),
                 f'SynerMix step on N̂={s.n_hat} / plain step on the un-supplemented batch of {s.n} '
                 f'(N̂/N={s.n_hat / s.n:.2f}: supplementation alone costs '
                 f'{median(per_repeat(times, "plain", "plain_unsupplemented")):.2f}x in the plain step); {note}')
    if 'half_res' in times:
        report.bench(f'step.{row}.original_scale_0.5', per_repeat(times, 'half_res', 'plain'),
                     f'SynerMixTask(original_scale=0.5) step / plain step, same batch; {note}', goal='<=1.3')
    else:
        report.note(f'step.{row}.original_scale_0.5 skipped: {s.model_name} is built with a strict image size '
                    '(SynerMixTask raises for original_scale != 1; use intra_every)')
    for k in cfg['every']:
        report.bench(f'step.{row}.intra_every_{k}', per_repeat(times, f'every{k}', 'plain'),
                     f'mean over {k} consecutive SynerMixTask(intra_every={k}) steps / plain step; {note}',
                     goal='<=1.3')
    if 'timm' in times:
        report.bench(f'step.{row}.beta0_vs_timm', per_repeat(times, 'plain', 'timm'),
                     f'SynerMixTask(beta=0) step / timm ClassificationTask step (same Mixup, soft-target CE); '
                     f'{note}', goal='<=1.05')
        report.bench(f'step.{row}.synermix_vs_handwritten', per_repeat(times, 'synermix', 'hand'),
                     'SynerMixTask(beta=0.1) step / the same two passes + intra + losses written inline '
                     f'(no task, no wrapper module); {note}', goal='<=1.05')


def report_where_time_goes(report: Report, s: StepBench, times: dict) -> None:
    row, note = s.row, s.batch_note
    extra = [a - p for a, p in zip(times['synermix'], times['plain'])]
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
                     f'forward+backward of the originals at {s.px // 2}px (with the antialiased resize) / at '
                     f'{s.px}px: what original_scale=0.5 can save on this model and size (0.25 = ideal); {note}')
    if 'c_joint_pass' in times:
        report.bench(f'step.{row}.joint_pass_vs_two_passes',
                     [j / (2 * o) for j, o in zip(times['c_joint_pass'], times['c_originals_pass'])],
                     'forward+backward of one pass over both views stacked (2N̂) / twice that of one view '
                     '(N̂): what batching the originals with the augmented view would save (1.0 = nothing); '
                     f'{note}')
    report.bench(f'intra.share_of_step.{row}', per_repeat(times, 'c_intra', 'synermix'),
                 f'intra op (synthesize_class_features + classifier + CE, forward+backward, '
                 f'{len(torch.unique(s.y))} classes, D={s.dim}) / full SynerMix step; {note}', goal='<0.01')
