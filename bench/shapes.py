"""Section `shapes`: distinct batch sizes in one epoch per batch mode (cudnn.benchmark and torch.compile see each)."""
import numpy as np

from timm_synermix import PairedBatchSampler, SupplementedBatchSampler

from .harness import Report, cifar100_like_labels


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
