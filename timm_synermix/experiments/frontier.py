""" Does SynerMix pay on your data? The compute-matched comparison against the plain-training frontier.

SynerMix costs more per epoch than plain training (an extra pass over the originals, supplemented batches), so
comparing at equal epochs flatters it. This command trains plain training and MixUp on a ladder of budgets
(1x, 2x, 4x, ... the base epochs): their accuracy against their cost (images through forward+backward,
``results.json`` "cost") is the frontier a user gets without SynerMix. Each SynerMix variant, trained for the
base epochs, is then judged by its distance above or below that frontier at its own cost.

The frontier at cost x is the best mean top-1 (over seeds) that baseline or MixUp reach for at most x:
each method's rungs are joined linearly in log(cost), and past the top rung the frontier stays at its best
value (the ladder is meant to go on until it has flattened: the table says whether the last rung added less
than the seed noise). A variant's distance is its top-1 minus the frontier at its cost, per seed, then mean ± std.

Example (any ImageFolder with train/ and val/; arguments after -- go to every train.py run):
    python -m timm_synermix.experiments.frontier data/mine --epochs 10 --ladder 1 2 4 \\
        --variants synermix synermix-intra mixup-supplemented --seeds 0 1 2 --out frontier_out \\
        -- --model resnet18 --img-size 64 -b 32 --lr 0.05 --pretrained-path backbone.safetensors
"""
import argparse
import json
import math
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .compare import RESERVED_FLAGS, CompareError, check_extra_args, execute_run, split_argv
from .runs import beta_text, load_run

__all__ = ['VARIANTS', 'LADDER_METHODS', 'plan_frontier', 'run_specs', 'frontier_points', 'frontier_at',
           'judge', 'flattening', 'frontier_table', 'plot_frontier', 'run_frontier', 'main']

LADDER_METHODS = ('baseline', 'mixup')
# Variant name -> (train.py --method, further train.py flags, what it is). β comes from the variant's beta.
VARIANTS = {
    'synermix': ('synermix', (), 'SynerMix: MixUp + intra term, supplemented batches (paper)'),
    'synermix-intra': ('synermix-intra', (), 'SynerMix-Intra: intra term alone, supplemented batches (paper)'),
    'synermix-paired': ('synermix', ('--batch-composition', 'paired'), 'SynerMix on paired batches'),
    'synermix-paired-distinct': ('synermix', ('--batch-composition', 'paired-distinct'),
                                 'SynerMix on paired batches, B/2 distinct classes'),
    'synermix-intra-paired-distinct': ('synermix-intra', ('--batch-composition', 'paired-distinct'),
                                       'SynerMix-Intra on paired batches, B/2 distinct classes'),
    'synermix-intra-aug-paired-distinct': ('synermix-intra-aug', ('--batch-composition', 'paired-distinct'),
                                           'intra term from the augmented view, paired distinct (1.0x)'),
    'synermix-intra-every4': ('synermix-intra', ('--synermix-every', '4'),
                              'SynerMix-Intra every 4th step, plain batches between'),
    'clean-view': ('clean-view', (), 'control: β·CE(originals) + (1-β)·CE, SynerMix-Intra\'s batches and cost'),
    'clean-view-mixup': ('clean-view-mixup', (), 'control: β·CE(originals) + (1-β)·MixUp, SynerMix\'s cost'),
    'baseline-supplemented': ('baseline', ('--batch-composition', 'supplemented'),
                              'composition control: plain training on supplemented batches'),
    'mixup-supplemented': ('mixup', ('--batch-composition', 'supplemented'),
                           'composition control: MixUp on supplemented batches'),
    'baseline-paired': ('baseline', ('--batch-composition', 'paired'), 'composition control: plain, paired'),
    'mixup-paired': ('mixup', ('--batch-composition', 'paired'), 'composition control: MixUp, paired'),
    'baseline-paired-distinct': ('baseline', ('--batch-composition', 'paired-distinct'),
                                 'composition control: plain, paired distinct'),
    'mixup-paired-distinct': ('mixup', ('--batch-composition', 'paired-distinct'),
                              'composition control: MixUp, paired distinct'),
    'baseline-repeats2': ('baseline', ('--aug-repeats', '2'), 'composition control: repeated augmentation x2 (DeiT)'),
}
INTRA_METHODS = ('synermix', 'synermix-intra', 'synermix-intra-aug', 'clean-view', 'clean-view-mixup')


def _slug(text):
    return text.replace(' ', '-').replace('(', '').replace(')', '').replace(',', '')


def plan_frontier(epochs, ladder, variants, seeds, betas=None, long_epochs=None):
    """ The runs: the plain ladder (baseline and MixUp at epochs x each multiplier), then each variant at `epochs`
    (and at `long_epochs` when given), over the seeds.

    Args:
        epochs: base epochs.
        ladder: multipliers of the plain ladder, e.g. (1, 2, 4).
        variants: names in `VARIANTS`.
        seeds: seeds of every run.
        betas: {variant or method: β}; a variant with an intra term and no entry uses train.py's default.
        long_epochs: also train the variants for this many epochs (a long schedule judged on the same ladder).

    Returns:
        list of dict(name, label, role, method, epochs, seed, beta, extra)
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise CompareError(f'unknown variant(s) {", ".join(unknown)}: valid variants are {", ".join(VARIANTS)}')
    if not ladder or sorted(ladder) != list(ladder) or ladder[0] < 1:
        raise CompareError(f'--ladder {" ".join(map(str, ladder))}: give increasing multipliers from 1, e.g. 1 2 4')
    betas = betas or {}
    specs = []
    for seed in seeds:
        for method in LADDER_METHODS:
            for m in ladder:
                e = int(round(epochs * m))
                specs.append(dict(name=f'{method}-e{e}-s{seed}', label=f'{method} ({e} ep)', role='ladder',
                                  method=method, epochs=e, seed=seed, beta=None, extra=()))
        for e in [epochs] + ([long_epochs] if long_epochs else []):
            for v in variants:
                method, extra, _ = VARIANTS[v]
                beta = betas.get(v, betas.get(method)) if method in INTRA_METHODS else None
                specs.append(dict(name=f'{v}-e{e}-s{seed}', label=f'{v} ({e} ep)', role='variant', variant=v,
                                  method=method, epochs=e, seed=seed, beta=beta, extra=tuple(extra)))
    return specs


def _train_args(spec, data_dir, out_root, extra_args):
    args = [str(data_dir), '--method', spec['method'], '--seed', str(spec['seed']), '--epochs', str(spec['epochs']),
            '--output', str(out_root), '--experiment', spec['name'], *spec['extra']]
    if spec['beta'] is not None:
        args += ['--synermix-beta', beta_text(spec['beta'])]
    return args + [str(a) for a in extra_args]


def run_specs(specs, data_dir, out_dir, extra_args=(), workers=2, threads=1, stream=None):
    """ Train `specs` (`workers` at a time, `threads` torch threads each); finished runs are reused, so an
    interrupted comparison resumes. Returns the run folders in the order of `specs`. """
    check_extra_args(extra_args, RESERVED_FLAGS + ('--epochs',), instead='--epochs / --ladder / --variants / --seeds')
    out = Path(out_dir)

    def one(spec):
        result = execute_run(spec['name'], _train_args(spec, data_dir, out / 'runs', extra_args),
                             out / 'runs' / spec['name'], threads=threads, stream=stream, label=spec['label'],
                             log_path=out / 'logs' / f'{spec["name"]}.log')
        return result['run_dir']
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, specs))


def frontier_points(specs, run_dirs):
    """ Every run's (spec, cost in images through forward+backward, last-k mean top-1, best top-1, seconds). """
    points = []
    for spec, run_dir in zip(specs, run_dirs):
        results = load_run(run_dir, with_features=False)['results']
        points.append(dict(spec, cost=float(results['cost']['image_passes']), top1=results['last_k_mean_top1'],
                           best=results['best_top1'], seconds=results['cost']['train_seconds'],
                           run_dir=str(run_dir)))
    return points


def _rungs(points):
    """ {method: [(mean cost, mean top-1, std top-1, epochs)]} of the ladder, by epochs. """
    rungs = {}
    for method in LADDER_METHODS:
        by_epochs = {}
        for p in points:
            if p['role'] == 'ladder' and p['method'] == method:
                by_epochs.setdefault(p['epochs'], []).append(p)
        rungs[method] = [(float(np.mean([p['cost'] for p in ps])), float(np.mean([p['top1'] for p in ps])),
                          float(np.std([p['top1'] for p in ps], ddof=1)) if len(ps) > 1 else math.nan, e)
                         for e, ps in sorted(by_epochs.items())]
    return rungs


def frontier_at(rungs, cost):
    """ The frontier's top-1 at `cost`: the best of each method's rungs joined linearly in log(cost), held flat
    past the top rung and taken as a running maximum (a larger budget can always run a cheaper schedule).
    None below the cheapest rung (no plain run that cheap was trained). """
    best = None
    for ladder in rungs.values():
        for i, (c, acc, _, _) in enumerate(ladder):
            if c > cost:
                if i:
                    (c0, a0, _, _) = ladder[i - 1]
                    t = (math.log(cost) - math.log(c0)) / (math.log(c) - math.log(c0))
                    value = a0 + t * (acc - a0)
                    best = value if best is None else max(best, value)
                break
            best = acc if best is None else max(best, acc)
    return best


def judge(points):
    """ Per variant: mean ± std top-1 and cost, and the distance to the frontier at its own cost (per seed). """
    rungs = _rungs(points)
    rows = {}
    for p in points:
        if p['role'] == 'variant':
            rows.setdefault(p['label'], []).append(p)
    out = []
    for label, ps in rows.items():
        distance = [p['top1'] - f for p in ps for f in [frontier_at(rungs, p['cost'])] if f is not None]
        out.append(dict(label=label, variant=ps[0]['variant'], epochs=ps[0]['epochs'], seeds=len(ps),
                        cost=float(np.mean([p['cost'] for p in ps])), top1=_mean_std([p['top1'] for p in ps]),
                        distance=_mean_std(distance) if len(distance) == len(ps) else None,
                        seconds=float(np.mean([p['seconds'] for p in ps]))))
    return out


def _mean_std(values):
    values = [float(v) for v in values]
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else math.nan)


def flattening(points):
    """ Per ladder method: the gain of its last rung over the one below against the seed noise (std of its top rung). """
    out = {}
    for method, ladder in _rungs(points).items():
        if len(ladder) >= 2:
            gain = ladder[-1][1] - ladder[-2][1]
            noise = max(ladder[-1][2], ladder[-2][2])
            out[method] = dict(from_epochs=ladder[-2][3], to_epochs=ladder[-1][3], gain=gain, noise=noise,
                               flat=bool(gain < noise))
    return out


def _pm(value, digits=2, sign=False):
    mean, std = value
    text = f'{mean:+.{digits}f}' if sign else f'{mean:.{digits}f}'
    return text + ('' if math.isnan(std) else f' ± {std:.{digits}f}')


def _flat_word(f):
    if math.isnan(f['noise']):
        return 'one seed, so flatness cannot be told'
    return 'flat (less than the seed noise)' if f['flat'] else 'still rising (more than the seed noise)'


def frontier_table(points, descriptions=None):
    """ Markdown: the ladder (frontier), then every variant with its distance to the frontier at equal cost. """
    descriptions = descriptions or {v: d for v, (_, _, d) in VARIANTS.items()}
    rungs = _rungs(points)
    lines = ['| plain run (the frontier) | epochs | cost (k images) | top-1 (last-k mean) |',
             '| --- | --- | --- | --- |']
    for method, ladder in rungs.items():
        for cost, acc, std, e in ladder:
            lines.append(f'| {method} | {e} | {cost / 1e3:.1f} | {_pm((acc, std))} |')
    flat = flattening(points)
    lines += [''] + [f'Last rung of {m} ({f["from_epochs"]} -> {f["to_epochs"]} epochs): {f["gain"]:+.2f} '
                     f'points against a seed std of {f["noise"]:.2f}: {_flat_word(f)}.' for m, f in flat.items()]
    lines += ['', '| variant | what it is | epochs | seeds | cost (k images) | x plain epoch | top-1 | '
                  'vs frontier at equal cost |', '| --- | --- | --- | --- | --- | --- | --- | --- |']
    base = min((c for ladder in rungs.values() for c, _, _, _ in ladder[:1]), default=math.nan)
    base_epochs = min((ladder[0][3] for ladder in rungs.values() if ladder), default=1)
    for row in judge(points):
        per_epoch = row['cost'] / row['epochs'] / (base / base_epochs) if base == base else math.nan
        distance = _pm(row['distance'], sign=True) if row['distance'] else 'below the ladder'
        lines.append(f'| {row["variant"]} | {descriptions.get(row["variant"], "")} | {row["epochs"]} | {row["seeds"]} '
                     f'| {row["cost"] / 1e3:.1f} | {per_epoch:.2f} | {_pm(row["top1"])} | {distance} |')
    return '\n'.join(lines) + '\n'


def plot_frontier(points, path, title):
    """ Top-1 against cost: the ladder's rungs (mean ± std) and the frontier line, every variant (mean ± std). """
    from matplotlib.figure import Figure
    fig = Figure(figsize=(9, 5.6), layout='constrained')
    ax = fig.subplots()
    rungs = _rungs(points)
    costs = sorted(c for ladder in rungs.values() for c, _, _, _ in ladder)
    top = max([costs[-1]] + [p['cost'] for p in points]) * 1.05
    grid = np.exp(np.linspace(math.log(costs[0]), math.log(top), 200))
    ax.plot(grid / 1e3, [frontier_at(rungs, c) for c in grid], color='black', lw=1.5, label='plain-training frontier')
    for method, ladder in rungs.items():
        ax.errorbar([c / 1e3 for c, _, _, _ in ladder], [a for _, a, _, _ in ladder],
                    yerr=[0 if math.isnan(s) else s for _, _, s, _ in ladder], fmt='--o', ms=5, capsize=3,
                    label=f'{method} ladder ({", ".join(str(e) for *_, e in ladder)} ep)')
    markers = 'sD^v<>p*hXP'
    for i, row in enumerate(judge(points)):
        ax.errorbar(row['cost'] / 1e3, row['top1'][0], yerr=0 if math.isnan(row['top1'][1]) else row['top1'][1],
                    fmt=markers[i % len(markers)], ms=7, capsize=3, label=row['label'])
    ax.set_xscale('log')
    ax.set_xlabel('training cost: thousand images through forward+backward (log scale)')
    ax.set_ylabel('top-1 (%), mean of the last epochs; mean ± std over seeds')
    ax.set_title(title)
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=7, ncol=2, loc='lower right')
    fig.savefig(path, dpi=110)
    return str(path)


def run_frontier(data_dir, out_dir, epochs, ladder, variants, seeds, extra_args=(), betas=None, long_epochs=None,
                 workers=2, threads=1, title=None, stream=None):
    """ Plan, train (resumably), and write ``frontier.md``, ``frontier.png`` and ``frontier.json`` in `out_dir`.

    Returns:
        dict(points, table (markdown), picture (path))
    """
    specs = plan_frontier(epochs, ladder, variants, seeds, betas=betas, long_epochs=long_epochs)
    dirs = run_specs(specs, data_dir, out_dir, extra_args, workers=workers, threads=threads, stream=stream)
    points = frontier_points(specs, dirs)
    out = Path(out_dir)
    table = frontier_table(points)
    (out / 'frontier.md').write_text(table)
    (out / 'frontier.json').write_text(json.dumps(points, indent=1))
    picture = plot_frontier(points, out / 'frontier.png', title or f'{data_dir}: accuracy against cost')
    return dict(points=points, table=table, picture=picture)


def main(argv=None):
    own, extra = split_argv(argv)
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.frontier', description=__doc__.split('\n\n')[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('data_dir', metavar='DATA_DIR', help='ImageFolder root with train/ and val/')
    parser.add_argument('--epochs', type=int, required=True, help='base epochs (the variants\' schedule)')
    parser.add_argument('--ladder', type=float, nargs='+', default=[1, 2, 4], help='plain-run budgets, in multiples '
                        'of --epochs (default: 1 2 4)')
    parser.add_argument('--variants', nargs='+', default=['synermix', 'synermix-intra', 'mixup-supplemented'],
                        metavar='V', help=f'SynerMix variants and controls (valid: {", ".join(VARIANTS)})')
    parser.add_argument('--beta', type=float, default=None, help='β of every variant with an intra term '
                        '(default: train.py\'s, 0.1 with MixUp and 0.5 without)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--out', required=True, help='output folder (runs/, frontier.md, frontier.png)')
    parser.add_argument('--workers', type=int, default=2, help='runs at a time (default: 2)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per run (default: 1)')
    parser.add_argument('--dry-run', action='store_true', help='print the planned train.py commands and exit')
    args = parser.parse_args(own)
    betas = {v: args.beta for v in args.variants} if args.beta is not None else None
    try:
        if args.dry_run:
            for spec in plan_frontier(args.epochs, args.ladder, args.variants, args.seeds, betas=betas):
                command = _train_args(spec, args.data_dir, Path(args.out) / 'runs', extra)
                print(f'{spec["role"]:7s} train.py {shlex.join(command)}')
            return 0
        result = run_frontier(args.data_dir, args.out, args.epochs, args.ladder, args.variants, args.seeds,
                              extra_args=extra, betas=betas, workers=args.workers, threads=args.threads)
    except (CompareError, ValueError) as e:
        print(f'frontier: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('frontier: interrupted; run the same command again to resume (finished runs are reused)',
              file=sys.stderr)
        return 130
    print(result['table'])
    print(f'picture: {result["picture"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
