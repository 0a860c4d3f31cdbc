""" Pictures and a results table from training runs, after the paper's figures.

* ``tsne.png``: t-SNE of eval-set features, one panel per method (Fig. 2, 8).
* ``accuracy_curves.png``: eval top-1 per epoch, mean and std band over seeds (Fig. 7).
* ``accuracy_vs_beta.png``: accuracy against the SynerMix weight beta (Fig. 10).
* ``pair_probability.png``: how rarely a mixup pair is intra-class, and how often a batch
  has classes seen once (the ones SynerMix supplements), analytic and simulated (Fig. 1).
* ``results.md``: per method, best and last-k top-1 and the feature metrics.

A run directory holds what the trainer (``train.py``) writes: ``args.yaml`` (method, synermix_beta, seed,
model, experiment), ``summary.csv`` (timm's per-epoch log), ``results.json`` and,
optionally, ``features.npz`` (``features`` [N, D], ``labels`` [N]).

Example:
    python -m timm_synermix.experiments.report output/train/* --out report
"""
import argparse
import logging
import math
import os
from fractions import Fraction

import numpy as np

from ..method.presets import PRESETS
from .runs import find_runs, format_table, group_runs, load_run, paper_name, top1
from .scores import mean_std

__all__ = ['make_report', 'pair_probability_curves']

_logger = logging.getLogger(__name__)

def _class_colors(num_classes):
    from matplotlib import colormaps
    if num_classes <= 10:
        return colormaps['tab10'].colors[:num_classes]
    if num_classes <= 20:
        return colormaps['tab20'].colors[:num_classes]
    return colormaps['turbo'](np.linspace(0, 1, num_classes))


def _plot_tsne(groups, path, max_points, seed):
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from sklearn.manifold import TSNE

    panels = [(label, next(r for r in rs if r['features'] is not None))
              for label, rs in groups.items() if any(r['features'] is not None for r in rs)]
    if not panels:
        _logger.warning('No run has features.npz: skipping the t-SNE picture.')
        return None
    classes = np.unique(np.concatenate([r['labels'] for _, r in panels]))
    colors = _class_colors(len(classes))
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(4.5 * ncols + 1.5, 4.2 * nrows), layout='constrained')
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, (label, run) in zip(axes, panels):
        features, labels = run['features'], run['labels']
        rng = np.random.default_rng(seed)  # per panel: runs on one eval set show the same images
        keep = np.sort(rng.choice(len(features), min(max_points, len(features)), replace=False))
        features, labels = features[keep], labels[keep]
        embedded = TSNE(
            n_components=2, perplexity=min(30., (len(features) - 1) / 3.), init='pca', random_state=seed,
        ).fit_transform(features.astype(np.float32))
        color_idx = np.searchsorted(classes, labels)
        for i, c in enumerate(classes):
            sel = color_idx == i
            ax.scatter(embedded[sel, 0], embedded[sel, 1], s=6, color=colors[i], alpha=0.8)
        title = f'{label} (seed {run["seed"]})'
        metrics = (run['results'] or {}).get('metrics') or {}
        if 'cohesion' in metrics and 'silhouette' in metrics:
            title += f'\ncohesion {metrics["cohesion"]:.3f}, silhouette {metrics["silhouette"]:.3f}'
        ax.set_title(title, fontsize=10)
        ax.set_xlabel('t-SNE 1')
        ax.set_ylabel('t-SNE 2')
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if len(classes) <= 20:
        handles = [Line2D([], [], marker='o', ls='', color=colors[i], label=str(c)) for i, c in enumerate(classes)]
        fig.legend(handles=handles, title='class', loc='outside right center')
    fig.suptitle(f't-SNE of eval-set features (≤{max_points} points per panel)')
    fig.savefig(path, dpi=110)
    return path


def _plot_accuracy_curves(groups, path):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(7.5, 4.8), layout='constrained')
    ax = fig.subplots()
    plotted = 0
    for label, runs in groups.items():
        runs = [r for r in runs if 'eval_top1' in r['summary']]
        if not runs:
            continue
        epochs = runs[0]['summary']['epoch']
        for r in runs[1:]:  # seeds may stop at different epochs: keep the shared ones
            epochs = np.intersect1d(epochs, r['summary']['epoch'])
        curves = np.stack([r['summary']['eval_top1'][np.isin(r['summary']['epoch'], epochs)] for r in runs])
        mean = curves.mean(0)
        line, = ax.plot(epochs, mean, marker='o' if len(epochs) < 15 else None, ms=3,
                        label=f'{label} (n={len(runs)})')
        if len(runs) > 1:
            std = curves.std(0, ddof=1)
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        plotted += 1
    if not plotted:
        _logger.warning('No run has eval_top1 in summary.csv: skipping the accuracy curves.')
        return None
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('epoch')
    ax.set_ylabel('eval top-1 (%)')
    ax.set_title('Eval top-1 per epoch (mean ± std over seeds)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def _plot_accuracy_vs_beta(runs, path):
    from matplotlib.figure import Figure

    series = {}
    for method in dict.fromkeys(r['method'] for r in runs if r['intra']):
        by_beta = {}
        for r in runs:
            if r['method'] == method and r['beta'] is not None:
                by_beta.setdefault(r['beta'], []).append(top1(r)[1])
        if len(by_beta) < 2:
            continue
        zero = [top1(r)[1] for r in runs if method in PRESETS and r['method'] == PRESETS[method].at_beta_zero]
        if zero and 0. not in by_beta:
            by_beta[0.] = zero
        series[method] = by_beta
    if not series:
        _logger.warning('No SynerMix method was run with two or more synermix_beta values: '
                        'skipping the accuracy-vs-beta picture.')
        return None
    fig = Figure(figsize=(6.5, 4.5), layout='constrained')
    ax = fig.subplots()
    for method, by_beta in series.items():
        betas = sorted(by_beta)
        stats = [mean_std(by_beta[b]) for b in betas]
        mean = np.array([s[0] for s in stats])
        std = np.nan_to_num(np.array([s[1] for s in stats]))
        label = f'{method} ({paper_name(method)})' if paper_name(method) else method
        if 0. in betas and not any(r['method'] == method and r['beta'] == 0. for r in runs):
            label += f'; β=0 is {PRESETS[method].at_beta_zero}'
        ax.errorbar(betas, mean, yerr=std, marker='o', capsize=3, label=label)
    ax.set_xlabel('β (weight of the intra-class loss)')
    ax.set_ylabel('top-1 (%), mean of the last k epochs')
    ax.set_title('Accuracy versus β')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def _no_singleton_probability(num_classes, batch_size):
    """ Exact P(no class appears exactly once) for batch_size uniform draws over num_classes.

    Inclusion-exclusion over the set of classes seen exactly once, in integers (the float
    sum cancels catastrophically for a hundred classes).
    """
    c, n = int(num_classes), int(batch_size)  # Python ints: numpy ones overflow
    total = 0
    falling = 1  # n! / (n - j)!
    for j in range(min(c, n) + 1):
        if j:
            falling *= n - j + 1
        total += (-1) ** j * math.comb(c, j) * falling * (c - j) ** (n - j)
    return float(Fraction(total, c ** n))


def pair_probability_curves(batch_sizes, class_counts, trials=2000, seed=0):
    """ Intra-class pair and singleton-class probabilities for uniform class draws (Fig. 1).

    For a batch of N labels drawn uniformly from C classes:

    * ``intra_pair_shuffle``: P(sample i and its partner under a random permutation share a
      class) = 1/N + (1 - 1/N)/C (the partner may be i itself). The paper's Fig. 1 uses this
      shuffle: C=16, N=32 gives ~9%; C=N=128 gives under 2%.
    * ``intra_pair_flip``: the same for timm's Mixup pairing i <-> N-1-i: 1/C for even N
      (odd N: the middle sample is its own partner).
    * ``any_singleton_class``: P(some class appears exactly once), exact by inclusion-exclusion.
    * ``singleton_fraction``: expected fraction of the batch's samples whose class appears
      nowhere else, (1 - 1/C)^(N-1): SynerMix adds one supplement per such sample, so the
      supplemented batch has on average N * (1 + this) samples.

    Args:
        batch_sizes: batch sizes N (>= 2).
        class_counts: class counts C (>= 1).
        trials: simulated batches per (C, N); 0 skips the simulation.
        seed: numpy seed of the simulation.

    Returns:
        dict(batch_sizes, class_counts, and per quantity above
        {'analytic': [len(C), len(N)] array, 'simulated': same shape or None})

    Example:
        >>> curves = pair_probability_curves([32], [16], trials=0)
        >>> print(round(curves['intra_pair_shuffle']['analytic'][0, 0], 4))
        0.0918
    """
    n = np.asarray(batch_sizes, dtype=np.int64)
    c = np.asarray(class_counts, dtype=np.int64)
    if n.ndim != 1 or c.ndim != 1 or n.size == 0 or c.size == 0 or n.min() < 2 or c.min() < 1:
        raise ValueError(f'Need batch sizes >= 2 and class counts >= 1 as 1-D lists, got {batch_sizes}, {class_counts}.')
    if trials < 0:
        raise ValueError(f'trials must be >= 0, got {trials}.')
    nn, cc = np.meshgrid(n.astype(np.float64), c.astype(np.float64))
    self_pair = (nn % 2) / nn  # odd batches pair the middle sample with itself under the flip
    analytic = {
        'intra_pair_shuffle': 1. / nn + (1. - 1. / nn) / cc,
        'intra_pair_flip': self_pair + (1. - self_pair) / cc,
        'any_singleton_class': np.array([[1. - _no_singleton_probability(ci, ni) for ni in n] for ci in c]),
        'singleton_fraction': (1. - 1. / cc) ** (nn - 1),
    }
    curves = dict(batch_sizes=n, class_counts=c)
    if not trials:
        curves.update({k: dict(analytic=v, simulated=None) for k, v in analytic.items()})
        return curves

    rng = np.random.default_rng(seed)
    simulated = {k: np.zeros_like(v) for k, v in analytic.items()}
    for i, ci in enumerate(c):
        for j, ni in enumerate(n):
            draws = rng.integers(ci, size=(trials, ni))
            partner = rng.permuted(np.broadcast_to(np.arange(ni), (trials, ni)), axis=1)
            simulated['intra_pair_shuffle'][i, j] = (draws == np.take_along_axis(draws, partner, 1)).mean()
            simulated['intra_pair_flip'][i, j] = (draws == draws[:, ::-1]).mean()
            counts = np.bincount((draws + ci * np.arange(trials)[:, None]).ravel(), minlength=trials * ci)
            once = counts.reshape(trials, ci) == 1
            simulated['any_singleton_class'][i, j] = once.any(1).mean()
            simulated['singleton_fraction'][i, j] = once.sum(1).mean() / ni
    curves.update({k: dict(analytic=analytic[k], simulated=simulated[k]) for k in analytic})
    return curves


def _plot_pair_probability(path, trials, seed):
    from matplotlib.figure import Figure

    class_counts = [10, 16, 37, 100, 257]  # the paper's example (16) and its data sets' class counts
    # even sizes only: an odd batch gives timm's middle sample itself as partner, a zigzag that hides the trend
    dense = pair_probability_curves(np.arange(2, 129, 2), class_counts, trials=0)
    sampled = pair_probability_curves([16, 32, 48, 64, 128], class_counts, trials=trials, seed=seed)
    panels = [
        ('intra_pair_shuffle', 'P(pair is intra-class), random-permutation shuffle\n(the paper\'s Fig. 1)'),
        ('intra_pair_flip', 'P(pair is intra-class), timm pairing i ↔ N-1-i'),
        ('any_singleton_class', 'P(some class appears exactly once)'),
        ('singleton_fraction', 'expected share of samples whose class appears once\n(= supplements per sample)'),
    ]
    fig = Figure(figsize=(11, 8.5), layout='constrained')
    axes = fig.subplots(2, 2).ravel()
    for ax, (key, title) in zip(axes, panels):
        for i, ci in enumerate(class_counts):
            line, = ax.plot(dense['batch_sizes'], dense[key]['analytic'][i], label=f'C={ci} analytic')
            if trials:
                ax.plot(sampled['batch_sizes'], sampled[key]['simulated'][i], 'o', color=line.get_color(),
                        mfc='none', label=f'C={ci} simulated')
        ax.set_title(title, fontsize=10)
        ax.set_xlabel('batch size N')
        ax.set_ylabel('probability' if key != 'singleton_fraction' else 'fraction of the batch')
        ax.grid(alpha=0.3)
    axes[0].set_yscale('log')
    axes[1].set_yscale('log')
    axes[0].legend(fontsize=7, ncol=2)
    simulated = f', circles simulated ({trials} batches each)' if trials else ''
    fig.suptitle(f'Batches of N labels drawn uniformly from C classes: lines exact{simulated}')
    fig.savefig(path, dpi=110)
    return path


def make_report(run_dirs, out_dir, max_tsne_points=1000, seed=0, pair_trials=2000, sweep_dirs=(), chosen=None,
                note=''):
    """ Build the report pictures and results.md from run directories.

    Pictures without the data they need (no features.npz, fewer than two betas, ...) are
    skipped with a logged warning.

    Args:
        run_dirs: run directories (see the module docstring for their contents).
        out_dir: where to write the PNGs and results.md (created).
        max_tsne_points: features per t-SNE panel (a seeded subsample).
        seed: seed of the t-SNE subsample and embedding and of the pair simulation.
        pair_trials: simulated batches per point of pair_probability.png.
        sweep_dirs: runs of a β sweep on a holdout (compare --beta-protocol): accuracy_vs_beta.png and the
            table's sweep section come from them.
        chosen: {method: β chosen by the sweep}.
        note: line under the table's title.

    Returns:
        {'tsne' | 'accuracy_curves' | 'accuracy_vs_beta' | 'pair_probability' | 'results': path}

    Example:
        >>> make_report(['output/train/baseline-s0', 'output/train/synermix-s0'], 'report')
    """
    if max_tsne_points < 10:
        raise ValueError(f'max_tsne_points={max_tsne_points} is too few for t-SNE; use 10 or more (default 1000).')
    runs = [load_run(d) for d in run_dirs]
    if not runs:
        raise ValueError('No run directories given; pass the output directories of train.py runs.')
    sweep = [load_run(d, with_features=False) for d in sweep_dirs]
    os.makedirs(out_dir, exist_ok=True)
    groups = group_runs(runs)
    results = os.path.join(out_dir, 'results.md')
    with open(results, 'w') as f:
        f.write(format_table(runs, sweep or None, chosen, note))
    built = {
        'tsne': _plot_tsne(groups, os.path.join(out_dir, 'tsne.png'), max_tsne_points, seed),
        'accuracy_curves': _plot_accuracy_curves(groups, os.path.join(out_dir, 'accuracy_curves.png')),
        'accuracy_vs_beta': _plot_accuracy_vs_beta(sweep or runs, os.path.join(out_dir, 'accuracy_vs_beta.png')),
        'pair_probability': _plot_pair_probability(os.path.join(out_dir, 'pair_probability.png'), pair_trials, seed),
        'results': results,
    }
    return {name: path for name, path in built.items() if path is not None}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.report', description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('runs', nargs='+', metavar='RUN_DIR',
                        help='train.py output directories, or folders holding them')
    parser.add_argument('--out', required=True, help='directory for the pictures and results.md')
    parser.add_argument('--max-tsne-points', type=int, default=1000, help='features per t-SNE panel')
    parser.add_argument('--pair-trials', type=int, default=2000, help='simulated batches per point (Fig. 1)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    try:
        built = make_report(find_runs(args.runs), args.out, args.max_tsne_points, args.seed, args.pair_trials)
    except ValueError as e:
        parser.error(str(e))
    for name, path in built.items():
        print(f'{name}: {path}')


if __name__ == '__main__':
    main()
