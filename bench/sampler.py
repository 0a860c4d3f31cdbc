"""Section `sampler`: SupplementedBatchSampler (construction + one epoch) against a naive per-batch label rescan."""
from typing import Callable

import numpy as np

from timm_synermix import SupplementedBatchSampler

from .harness import Report, fmt_s, interleave, median, now, per_repeat


def naive_batches(labels: np.ndarray, batch_size: int, num_batches: int, rng: np.random.Generator) -> float:
    """The naive supplementing sampler: rescan all labels for every lonely class of every batch."""
    start = now()
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
    return now() - start


def sampler_epoch(labels: np.ndarray, batch_size: int, supplement: bool) -> Callable[[], float]:
    """Seconds of construction + one epoch; `.parts` keeps (construction, epoch, batches) per call."""
    def run() -> float:
        start = now()
        sampler = SupplementedBatchSampler(labels, batch_size, seed=0, supplement=supplement)
        built = now()
        for _ in sampler:
            pass
        end = now()
        run.parts.append((built - start, end - built, len(sampler)))
        return end - start
    run.parts = []
    return run


def bench_sampler(report: Report, cfg: dict) -> None:
    num_labels, num_classes, batch_size, naive_count, repeats = cfg['sampler']
    labels = np.random.default_rng(0).integers(0, num_classes, num_labels)
    supplemented, plain = sampler_epoch(labels, batch_size, True), sampler_epoch(labels, batch_size, False)
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
