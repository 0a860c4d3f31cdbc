"""Section `intra`: synthesize_class_features against the authors' per-class Python loop, at 10, 100, 257 classes."""
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from timm_synermix import synthesize_class_features

from .harness import Report, fmt_s, interleave, median, per_repeat, timed


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
