"""Section `loader`: two-view loading (TwoViewDataset, one decode) vs one view and vs decoding twice.

Real PNG and JPEG files written to a temporary folder, timm's transforms, create_synermix_loader, num_workers=0.
"""
import os
import tempfile
from typing import Callable

import numpy as np
import torch

from timm_synermix import SupplementedBatchSampler, TwoViewDataset, TwoViews, create_synermix_loader, \
    dataset_labels

from .harness import Report, interleave, median, now, per_repeat

PX, BATCH_SIZE = 64, 32


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
        # Smooth random images (upsampled noise) so compression behaves like photos.
        small = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        image = small.resize((size, size), Image.BICUBIC)
        image.save(os.path.join(folder, f'{i}.{ext}'), **({'quality': 90} if ext == 'jpg' else {}))


def make_loader(root: str, kind: str):
    """kind: 'one' (one view), 'two' (TwoViewDataset) or 'twice' (DecodeTwiceDataset)."""
    from timm.data import create_dataset
    dataset = create_dataset('', root=root)
    if kind == 'twice':
        dataset = DecodeTwiceDataset(dataset)
    sampler = SupplementedBatchSampler(
        dataset_labels(dataset), BATCH_SIZE, drop_last=False, shuffle=False, supplement=False)
    return create_synermix_loader(
        dataset, (3, PX, PX), sampler, two_views=kind != 'one', use_prefetcher=True,
        device=torch.device('cpu'), num_workers=0)


def epoch_seconds(loader, count: int) -> Callable[[], float]:
    def once() -> float:
        start = now()
        seen = 0
        for _, target in loader:
            seen += target.numel()
        assert seen == count, seen
        return now() - start
    return once


def bench_loader(report: Report, cfg: dict) -> None:
    count = cfg['images']
    for ext, label in (('png', 'PNG'), ('jpg', 'JPEG')):
        with tempfile.TemporaryDirectory(prefix='synermix_bench_') as root:
            write_images(root, count, ext)
            loaders = {kind: make_loader(root, kind) for kind in ('one', 'two', 'twice')}
            times = interleave({k: epoch_seconds(v, count) for k, v in loaders.items()}, cfg['loader_repeats'], 1)
            rate = {k: count / median(v) for k, v in times.items()}
            where = (f'{count} {label} files 128x128 -> {PX}px, timm create_transform (train: RandomResizedCrop, '
                     f'flip, ColorJitter; original: eval resize+crop), create_synermix_loader (timm fast_collate + '
                     f'PrefetchLoader, normalising on the CPU here), batch {BATCH_SIZE}, num_workers=0')
            report.bench(f'loader.{ext}.two_views_vs_one_view', per_repeat(times, 'one', 'two'),
                         f'images/s of TwoViewDataset (decode once, two transforms) / one-view dataset: '
                         f'{rate["two"]:.0f} vs {rate["one"]:.0f} img/s; {where}', goal='>=0.8')
            report.bench(f'loader.{ext}.two_views_vs_decode_twice', per_repeat(times, 'twice', 'two'),
                         f'images/s of TwoViewDataset / a dataset that opens and decodes the file once per view: '
                         f'{rate["two"]:.0f} vs {rate["twice"]:.0f} img/s; {where}')
