""" Is SynerMix worth what it costs? A compute-matched study on glyphs from real font files.

The regime the paper's claims are for: many classes (>= 100 glyph classes, so a batch of 32 needs
supplementation as on CIFAR-100), trained from scratch, validated on font families never seen in training.
Every row runs over several seeds:

* baseline, MixUp, SynerMix-Intra, SynerMix (supplemented batches, the paper's) and SynerMix on paired
  batches (`--synermix-batches paired`: the batch stays at -b), all for the same number of epochs;
* the baseline and MixUp trained for as many epochs as it takes to spend SynerMix's compute, counted in
  images through forward+backward (SynerMix's originals' pass included; `results.json` "cost"), so each
  method is also compared at equal compute.

β of SynerMix and SynerMix-Intra is chosen by the paper's protocol: a stratified 10% holdout of the training
set, the paper's β grid, the first seed, then the final runs with the best β. Paired SynerMix reuses the β
chosen for SynerMix. Runs go two at a time (one torch thread each); finished runs are reused, so an
interrupted study resumes.

Outputs in OUT: ``results.md`` (mean ± std top-1, best and last-k, cohesion/separability metrics, cost per
run), ``cost_vs_accuracy.png`` (top-1 against cost for every run, with the Pareto front), ``accuracy_curves.png``,
``tsne.png``, ``accuracy_vs_beta.png``, ``study.json`` (every run's numbers) and the data's manifest.

Example:
    python -m timm_synermix.experiments.study --out results/study          # make study
    python -m timm_synermix.experiments.study --quick --out study_output   # make study-quick, minutes
"""
import argparse
import json
import math
import re
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..method.presets import PRESETS
from .compare import HOLDOUT, CompareError, execute_run, select_best_beta
from .runs import beta_text, fmt, load_run

__all__ = ['FULL', 'QUICK', 'ROWS', 'plan_study', 'matched_epochs', 'run_study', 'main']

FULL = dict(
    model='resnet10t', size=32, epochs=10, batch=32, lr=0.05, train_fonts=20, seeds=(0, 1, 2), last_k=3,
    workers=2, max_tsne_points=1500, log_interval=50,
)
QUICK = dict(
    model='test_resnet', size=16, epochs=1, batch=16, lr=0.05, train_fonts=4, seeds=(0,), last_k=1,
    workers=2, max_tsne_points=100, log_interval=10, betas=(0.1, 0.4),
)
# (row label, method preset, extra train.py arguments); epochs: 'E', or 'matched' for the compute-matched rows
ROWS = (
    ('baseline', 'baseline', (), 'E'),
    ('mixup', 'mixup', (), 'E'),
    ('synermix-intra', 'synermix-intra', (), 'E'),
    ('synermix', 'synermix', (), 'E'),
    ('synermix (paired batches)', 'synermix', ('--synermix-batches', 'paired'), 'E'),
    ('baseline (compute-matched)', 'baseline', (), 'matched'),
    ('mixup (compute-matched)', 'mixup', (), 'matched'),
)
SWEPT = ('synermix-intra', 'synermix')   # β chosen on the holdout; the paired row takes synermix's


def recipe(cfg, data_dir):
    """train.py arguments shared by every run: from scratch, SGD with cosine decay, crop-only augmentation."""
    # No flips: a mirrored glyph is another character (or none).
    return [str(data_dir), '--model', cfg['model'], '--img-size', str(cfg['size']), '--device', 'cpu', '-j', '0',
            '-b', str(cfg['batch']), '--opt', 'sgd', '--lr', str(cfg['lr']), '--momentum', '0.9',
            '--weight-decay', '5e-4', '--sched', 'cosine', '--warmup-epochs', '0', '--smoothing', '0',
            '--scale', '0.6', '1', '--ratio', '0.8', '1.25', '--hflip', '0', '--color-jitter', '0',
            '--mixup-mode', 'elem', '--checkpoint-hist', '1', '--log-interval', str(cfg['log_interval']),
            '--report-last-k', str(cfg['last_k']), '--val-split', 'val']


def matched_epochs(labels, batch_size, epochs, seed=0):
    """Epochs of a plain run that cost what `epochs` of SynerMix on supplemented batches cost.

    Cost is images through forward+backward: SynerMix passes each supplemented batch of N̂ twice (augmented
    view, originals), a plain run its batch of N once, so the factor is 2·mean(N̂)/N over an epoch of these
    labels.
    """
    from ..method.sampler import SupplementedBatchSampler
    sampler = SupplementedBatchSampler(labels, batch_size, seed=seed)
    sampler.set_epoch(0)
    factor = 2 * np.mean([len(b) for b in sampler]) / batch_size
    return max(epochs, int(round(epochs * factor))), float(factor)


def plan_study(cfg, matched):
    """The study's runs: the β sweep first, then the final runs (those waiting for a β last)."""
    seeds, grid = list(cfg['seeds']), cfg.get('betas')
    sweep = [dict(name=f'{m}-b{beta_text(b)}-s{seeds[0]}', label=m, method=m, seed=seeds[0], beta=b, stage='sweep',
                  extra=('--val-holdout', str(HOLDOUT)), epochs=cfg['epochs'])
             for m in SWEPT for b in (grid or PRESETS[m].beta_grid)]
    finals = []
    for seed in seeds:
        for label, method, extra, epochs in ROWS:
            slug = label.replace(' (', '-').replace(')', '').replace(' ', '-')
            finals.append(dict(name=f'{slug}-s{seed}', label=label, method=method, seed=seed, beta=None,
                               stage='final', extra=tuple(extra), epochs=matched if epochs == 'matched' else cfg['epochs'],
                               beta_from=method if PRESETS[method].intra else None))
    return sweep, finals


def _train_args(spec, common, out_root):
    args = [*common, '--method', spec['method'], '--seed', str(spec['seed']), '--epochs', str(spec['epochs']),
            '--output', str(out_root), '--experiment', spec['name'], *spec['extra']]
    if spec['beta'] is not None:
        args += ['--synermix-beta', beta_text(spec['beta'])]
    return args


def _run_all(specs, common, out, workers, stream):
    """Train `specs` `workers` at a time (one torch thread each); returns their run folders in order."""
    def one(spec):
        root = out / ('sweep' if spec['stage'] == 'sweep' else 'runs')
        result = execute_run(spec['name'], _train_args(spec, common, root), root / spec['name'], threads=1,
                             log_path=out / 'logs' / f'{spec["stage"]}-{spec["name"]}.log', stream=stream,
                             label=spec['label'])
        return result['run_dir']
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, specs))


def _choose_betas(sweep_dirs, stream):
    chosen = {}
    runs = [load_run(d, with_features=False) for d in sweep_dirs]
    for method in SWEPT:
        scores = [(r['beta'], r['results'].get('last_k_mean_top1')) for r in runs if r['method'] == method]
        chosen[method] = select_best_beta(scores)
        print(f'study: {method}: holdout top-1 by β ' + ', '.join(f'{beta_text(b)}: {t:.2f}' for b, t in scores)
              + f' -> β = {beta_text(chosen[method])}', file=stream, flush=True)
    return chosen


def _pareto(points):
    """Indices of the points (cost, accuracy) that no other point beats on both (lower cost, higher accuracy)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot_cost_vs_accuracy(runs, path):
    """Final top-1 (mean of the last k epochs) against image passes, one point per run; the Pareto front."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 5.2), layout='constrained')
    ax = fig.subplots()
    points = [(r['results']['cost']['image_passes'] / 1e3, r['results']['last_k_mean_top1']) for r in runs]
    labels = list(dict.fromkeys(r['label'] for r in runs))
    markers = dict(zip(labels, 'osD^v<>p*h'))
    for label in labels:
        sel = [p for p, r in zip(points, runs) if r['label'] == label]
        ax.scatter([p[0] for p in sel], [p[1] for p in sel], marker=markers[label], s=40, label=label, alpha=0.85)
    front = [points[i] for i in _pareto(points)]
    ax.step([p[0] for p in front], [p[1] for p in front], where='post', color='black', lw=1, ls='--',
            label='Pareto front (no run is cheaper and better)')
    ax.set_xlabel('training cost: thousand images through forward+backward')
    ax.set_ylabel(f'top-1 on unseen font families (%), mean of the last {runs[0]["results"]["last_k"]} epochs')
    ax.set_title('Accuracy against cost, every run (seeds as separate points)')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def cost_table(runs):
    """Markdown: per row, mean ± std cost (image passes, training seconds) and top-1 per million image passes."""
    lines = ['## Cost', '', '| row | epochs | image passes (k) / run | training time / run | last-k top-1 |',
             '| --- | --- | --- | --- | --- |']
    for label in dict.fromkeys(r['label'] for r in runs):
        rs = [r for r in runs if r['label'] == label]
        cost = [r['results']['cost'] for r in rs]
        lines.append(f'| {label} | {cost[0]["epochs"]} | {fmt([c["image_passes"] / 1e3 for c in cost], 1)} | '
                     f'{fmt([c["train_seconds"] for c in cost], 0, " s")} | '
                     f'{fmt([r["results"]["last_k_mean_top1"] for r in rs])} |')
    lines += ['', 'Image passes: images through forward+backward, SynerMix\'s originals\' pass included (results.json '
                  '"cost"); training time: the loop\'s wall time with one torch thread, two runs sharing the 2-core '
                  'machine.']
    return '\n'.join(lines) + '\n'


def _verdict(runs):
    """One sentence per SynerMix row: against the best plain row at equal epochs and at equal compute."""
    mean = {label: np.mean([r['results']['last_k_mean_top1'] for r in runs if r['label'] == label])
            for label in dict.fromkeys(r['label'] for r in runs)}
    equal_epochs = max(mean.get('baseline', -1), mean.get('mixup', -1))
    equal_compute = max(mean.get('baseline (compute-matched)', -1), mean.get('mixup (compute-matched)', -1))
    out = []
    for label in ('synermix', 'synermix (paired batches)', 'synermix-intra'):
        if label in mean:
            out.append(f'- {label}: {mean[label]:.2f} against {equal_epochs:.2f} (best of baseline/MixUp, same epochs) '
                       f'and {equal_compute:.2f} (best of baseline/MixUp, same compute): '
                       f'{mean[label] - equal_epochs:+.2f} / {mean[label] - equal_compute:+.2f} points.')
    return '\n'.join(out)


def _build_data(cfg, out, fonts_dirs, stream):
    from .fonts import build_font_dataset
    data = build_font_dataset(out / 'data' / 'fonts', fonts_dirs=fonts_dirs, size=cfg['size'],
                              train_fonts_per_class=cfg['train_fonts'], min_train_fonts=min(cfg['train_fonts'], 10))
    train = sum(data['counts']['train'].values())
    val = sum(data['counts']['val'].values())
    print(f'study: data {data["root"]}: {data["num_classes"]} classes, {train} train / {val} val images '
          f'({"reused" if data["reused"] else "written"})', file=stream, flush=True)
    return data


def _write_results(out, cfg, data, finals, sweep_dirs, chosen, matched, factor, common):
    from .report import make_report
    runs = [load_run(d, with_features=False) for d in finals]
    note = (f'Glyphs of real fonts ({data["num_classes"]} classes, {sum(data["counts"]["train"].values())} train '
            f'images, validation on {sum(data["counts"]["val"].values())} images of unseen font families), '
            f'{cfg["model"]} from scratch at {cfg["size"]} px, {cfg["epochs"]} epochs ({matched} for the '
            f'compute-matched rows: SynerMix on supplemented batches costs {factor:.2f}x the image passes of a '
            f'plain run); seeds {", ".join(map(str, cfg["seeds"]))}. train.py arguments shared by every run: '
            f'`{shlex.join(common[1:])}`.')
    pictures = make_report(finals, str(out), max_tsne_points=cfg['max_tsne_points'], pair_trials=0,
                           sweep_dirs=sweep_dirs, chosen=chosen, note=note)
    pictures['cost_vs_accuracy'] = plot_cost_vs_accuracy(runs, out / 'cost_vs_accuracy.png')
    text = (out / 'results.md').read_text()
    text = text.replace('## Results\n', '## Results\n\n' + _verdict(runs) + '\n', 1)
    (out / 'results.md').write_text(text + '\n' + cost_table(runs))
    (out / 'study.json').write_text(json.dumps([dict(name=Path(r['path']).name, label=r['label'], seed=r['seed'],
                                                     beta=r['beta'], results=r['results']) for r in runs], indent=1))
    # The manifest names every font file; those shipped inside Python packages lose this machine's prefix.
    manifest = (Path(data['root']) / 'manifest.json').read_text()
    (out / 'data_manifest.json').write_text(re.sub(r'"[^"]*/site-packages/', '"<site-packages>/', manifest))
    return pictures


def run_study(out_dir, quick=False, seeds=None, epochs=None, workers=None, fonts_dirs=None, stream=None):
    """ Build the font data, sweep β, train every row over the seeds, write the table and pictures.

    Returns:
        dict(table: results.md path, pictures: {name: path}, chosen_betas, matched_epochs, wall_s)
    """
    stream = stream or sys.stdout
    start = time.perf_counter()
    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in dict(seeds=seeds, epochs=epochs, workers=workers).items() if v})
    out = Path(out_dir).resolve()
    data = _build_data(cfg, out, fonts_dirs, stream)
    from timm.data import ImageDataset
    labels = np.asarray([t for _, t in ImageDataset(data['train']).reader.samples])
    matched, factor = matched_epochs(labels, cfg['batch'], cfg['epochs'])
    common = recipe(cfg, data['root'])
    sweep, finals = plan_study(cfg, matched)
    print(f'study: {len(sweep)} β-sweep runs, then {len(finals)} final runs, {cfg["workers"]} at a time; '
          f'compute-matched rows: {matched} epochs ({factor:.2f}x)', file=stream, flush=True)
    waiting = [s for s in finals if s['beta_from']]
    first = _run_all(sweep + [s for s in finals if not s['beta_from']], common, out, cfg['workers'], stream)
    sweep_dirs = first[:len(sweep)]
    chosen = _choose_betas(sweep_dirs, stream)
    for spec in waiting:
        spec['beta'] = chosen[spec['beta_from']]
    _run_all(waiting, common, out, cfg['workers'], stream)
    final_dirs = [str(out / 'runs' / s['name']) for s in finals]
    pictures = _write_results(out, cfg, data, final_dirs, sweep_dirs, chosen, matched, factor, common)
    wall_s = time.perf_counter() - start
    print(f'study: done in {wall_s / 60:.1f} min; table {out / "results.md"}', file=stream, flush=True)
    return dict(table=str(out / 'results.md'), pictures=pictures, chosen_betas=chosen, matched_epochs=matched,
                wall_s=wall_s)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.study', description=__doc__.split('\n\n')[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--out', default='results/study', help='output folder (default: results/study)')
    parser.add_argument('--quick', action='store_true', help='tiny model, data and epochs: a smoke run (minutes)')
    parser.add_argument('--seeds', nargs='+', type=int, default=None, help=f'seeds (default: {FULL["seeds"]})')
    parser.add_argument('--epochs', type=int, default=None, help=f'epochs (default: {FULL["epochs"]})')
    parser.add_argument('--workers', type=int, default=None, help='runs at a time (default: 2)')
    parser.add_argument('--fonts', nargs='+', default=None, metavar='DIR',
                        help='font folders (default: the system\'s and matplotlib\'s)')
    args = parser.parse_args(argv)
    try:
        result = run_study(args.out, quick=args.quick, seeds=args.seeds, epochs=args.epochs, workers=args.workers,
                           fonts_dirs=args.fonts)
    except (CompareError, ValueError) as e:
        print(f'study: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('study: interrupted; run the same command again to resume (finished runs are reused)', file=sys.stderr)
        return 130
    print(Path(result['table']).read_text())
    return 0


if __name__ == '__main__':
    sys.exit(main())
