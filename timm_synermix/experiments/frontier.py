""" Does SynerMix pay on your data? The compute-matched comparison against the plain-training frontier.

SynerMix costs more per epoch than plain training (an extra pass over the originals, supplemented batches), so
comparing at equal epochs flatters it. This command trains plain training and MixUp on a ladder of budgets
(1x, 2x, 4x, ... the base epochs): their accuracy against their cost (images through forward+backward,
``results.json`` "cost") is the frontier a user gets without SynerMix. Each SynerMix variant, trained for the
base epochs, is then judged by its distance above or below that frontier at its own cost.

Every run is scored alike: the mean top-1 of its last k epochs (``--last-k``, default 3), whatever its length.
The frontier of one seed at cost x is the best top-1 that seed's baseline or MixUp rungs reach for at most x (each
method's rungs joined linearly in log(cost); past the top rung it stays at its best value, and the table says
whether the last rung added less than the seed noise). A variant's distance is, per seed, its top-1 minus its
seed's frontier at its own cost: mean ± std over seeds and the 95% interval, and a verdict that says "cannot
separate" when the interval holds zero, the distance is within one validation image, or the frontier is at 100%.

Runs go through the experiments' runner (``runner.py``): finished runs are reused only when their arguments and
data match, an interrupted run resumes from its checkpoint, and flags the plan sets are refused after ``--``.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..method.presets import get_preset
from .runner import Runner, RunnerError, RunSpec, option_value, split_argv, user_args
from .scores import Difference, Score, mean_std, paired_difference

__all__ = ['Variant', 'VARIANTS', 'LADDER_METHODS', 'plan_frontier', 'point', 'frontier_at', 'judge', 'flattening',
           'frontier_table', 'plot_frontier', 'score_of', 'run_frontier', 'main']

LADDER_METHODS = ('baseline', 'mixup')


@dataclass(frozen=True)
class Variant:
    """A run kind of the comparison: a method, the batches it trains on, and any further flag of its own.

    Args:
        method: A preset name (`timm_synermix.PRESETS`).
        composition: `--batch-composition` (None: the preset's).
        options: Further train.py flags, e.g. ('--synermix-every', '4').
        description: What it is, for the table.
    """
    method: str
    composition: Optional[str] = None
    options: Tuple[str, ...] = ()
    description: str = ''


VARIANTS: Dict[str, Variant] = {
    'synermix': Variant('synermix', description='SynerMix: MixUp + intra term, supplemented batches (paper)'),
    'synermix-intra': Variant('synermix-intra',
                              description='SynerMix-Intra: intra term alone, supplemented batches (paper)'),
    'synermix-manifold': Variant('synermix-manifold', description='SynerMix with Manifold MixUp (paper)'),
    'synermix-paired': Variant('synermix', 'paired', description='SynerMix on paired batches'),
    'synermix-paired-distinct': Variant('synermix', 'paired-distinct',
                                        description='SynerMix on paired batches, B/2 distinct classes'),
    'synermix-intra-paired-distinct': Variant('synermix-intra', 'paired-distinct',
                                              description='SynerMix-Intra on paired batches, B/2 distinct classes'),
    'synermix-intra-aug-paired-distinct': Variant(
        'synermix-intra-aug', 'paired-distinct',
        description='intra term from the augmented view, paired distinct (1.0x)'),
    'synermix-intra-every4': Variant('synermix-intra', options=('--synermix-every', '4'),
                                     description='SynerMix-Intra every 4th step, plain batches between'),
    'clean-view': Variant('clean-view', description='control: β·CE(originals) + (1-β)·CE, '
                                                    'SynerMix-Intra\'s batches and cost'),
    'clean-view-mixup': Variant('clean-view-mixup',
                                description='control: β·CE(originals) + (1-β)·MixUp, SynerMix\'s cost'),
    'baseline-supplemented': Variant('baseline', 'supplemented',
                                     description='composition control: plain training on supplemented batches'),
    'mixup-supplemented': Variant('mixup', 'supplemented',
                                  description='composition control: MixUp on supplemented batches'),
    'baseline-paired': Variant('baseline', 'paired', description='composition control: plain, paired'),
    'mixup-paired': Variant('mixup', 'paired', description='composition control: MixUp, paired'),
    'baseline-paired-distinct': Variant('baseline', 'paired-distinct',
                                        description='composition control: plain, paired distinct'),
    'mixup-paired-distinct': Variant('mixup', 'paired-distinct',
                                     description='composition control: MixUp, paired distinct'),
    'baseline-repeats2': Variant('baseline', options=('--aug-repeats', '2'),
                                 description='composition control: repeated augmentation x2 (DeiT)'),
}


def _unique(name: str, values: Sequence) -> None:
    repeated = sorted({str(v) for v in values if list(values).count(v) > 1})
    if repeated:
        raise RunnerError(f'{name} {" ".join(repeated)} given more than once: each is one run, not two')


def plan_frontier(data_dir, epochs: int, ladder: Sequence[float], variants: Sequence[str], seeds: Sequence[int],
                  extra: Sequence[str] = (), last_k: int = 3, betas: Optional[Dict[str, float]] = None,
                  long_epochs: Optional[int] = None) -> List[RunSpec]:
    """ The runs: the plain ladder (baseline and MixUp at epochs x each multiplier), then each variant at `epochs`
    (and at `long_epochs` when given), over the seeds.

    Args:
        data_dir: ImageFolder root.
        epochs: Base epochs.
        ladder: Multipliers of the plain ladder, increasing from 1, e.g. (1, 2, 4).
        variants: Names in `VARIANTS`.
        seeds: Seeds of every run.
        extra: The train.py arguments of every run (`runner.user_args`).
        last_k: The score: mean top-1 of the last k epochs.
        betas: {variant: β}; a variant with an intra term and no entry uses its preset's default.
        long_epochs: Also train the variants for this many epochs (a long schedule judged on the same ladder).
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise RunnerError(f'unknown variant(s) {", ".join(unknown)}: valid variants are {", ".join(VARIANTS)}')
    _unique('--seeds', list(seeds))
    _unique('--variants', list(variants))
    if not ladder or sorted(ladder) != list(ladder) or ladder[0] < 1:
        raise RunnerError(f'--ladder {" ".join(map(str, ladder))}: give increasing multipliers from 1, e.g. 1 2 4')
    rungs = [int(round(epochs * m)) for m in ladder]
    if len(set(rungs)) != len(rungs):
        raise RunnerError(f'--ladder {" ".join(map(str, ladder))} x --epochs {epochs} gives the epochs '
                          f'{" ".join(map(str, rungs))}: rungs that round to the same epochs are one run, not two')
    betas = betas or {}
    common = dict(data=str(Path(data_dir).resolve()), last_k=last_k, extra=tuple(extra))
    specs = []
    for seed in seeds:
        for method in LADDER_METHODS:
            for e in rungs:
                specs.append(RunSpec(name=f'{method}-e{e}-s{seed}', preset=get_preset(method), seed=seed, epochs=e,
                                     variant=method, label=f'{method} ({e} ep)', role='ladder', **common))
        for e in [epochs] + ([long_epochs] if long_epochs else []):
            for v in variants:
                kind = VARIANTS[v]
                preset = get_preset(kind.method)
                specs.append(RunSpec(name=f'{v}-e{e}-s{seed}', preset=preset, seed=seed, epochs=e,
                                     beta=betas.get(v) if preset.intra else None, composition=kind.composition,
                                     options=kind.options, variant=v, label=f'{v} ({e} ep)', role='variant',
                                     **common))
    return specs


def point(result) -> Dict:
    """A finished run as the frontier reads it (and study.json records it)."""
    spec = result.spec
    return dict(name=spec.name, label=spec.label, role=spec.role, variant=spec.variant, method=spec.preset.name,
                intra=spec.intra, epochs=spec.epochs, seed=spec.seed, beta=spec.beta, cost=result.cost,
                top1=result.top1, best=result.results.get('best_top1'), seconds=result.seconds,
                run_dir=str(result.path))


def _rungs(points, seed=None):
    """ {method: [(mean cost, mean top-1, std top-1, epochs)]} of the ladder (of one seed, or over seeds). """
    rungs = {}
    for method in LADDER_METHODS:
        by_epochs = {}
        for p in points:
            if p['role'] == 'ladder' and p['variant'] == method and seed in (None, p['seed']):
                by_epochs.setdefault(p['epochs'], []).append(p)
        rungs[method] = [(float(np.mean([p['cost'] for p in ps])), *mean_std(p['top1'] for p in ps), e)
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


def _seed_frontiers(points):
    """{seed: its rungs} for the seeds whose ladder is complete (every rung any seed has)."""
    seeds = sorted({p['seed'] for p in points if p['role'] == 'ladder'})
    per_seed = {s: _rungs(points, s) for s in seeds}
    full = max((sum(len(r) for r in rungs.values()) for rungs in per_seed.values()), default=0)
    return {s: rungs for s, rungs in per_seed.items() if sum(len(r) for r in rungs.values()) == full}


def judge(points, score: Optional[Score] = None) -> List[Dict]:
    """ Per variant row: mean ± std top-1 and cost, the distance to its seed's frontier at its own cost (paired by
    seed, `scores.Difference`), and the verdict under `score`. """
    score = score or Score(last_k=0)
    frontiers = _seed_frontiers(points)
    rows = {}
    for p in points:
        if p['role'] == 'variant':
            rows.setdefault(p['label'], []).append(p)
    out = []
    for label, ps in rows.items():
        at = {p['seed']: frontier_at(frontiers[p['seed']], p['cost']) for p in ps if p['seed'] in frontiers}
        at = {s: f for s, f in at.items() if f is not None}
        distance = paired_difference({p['seed']: p['top1'] for p in ps}, at) if at else None
        ceiling = float(np.mean(list(at.values()))) if at else None
        out.append(dict(label=label, variant=ps[0]['variant'], epochs=ps[0]['epochs'], seeds=len(ps),
                        cost=float(np.mean([p['cost'] for p in ps])), top1=mean_std(p['top1'] for p in ps),
                        distance=distance, seconds=float(np.mean([p['seconds'] for p in ps])),
                        verdict=distance.verdict(score, ceiling) if distance else 'below the ladder: no plain '
                                                                                   'run that cheap'))
    return out


def flattening(points):
    """ Per ladder method: the gain of its last rung over the one below against the seed noise (std of its top rung). """
    out = {}
    for method, ladder in _rungs(points).items():
        if len(ladder) >= 2:
            gain = ladder[-1][1] - ladder[-2][1]
            noise = max(ladder[-1][2], ladder[-2][2])
            out[method] = dict(from_epochs=ladder[-2][3], to_epochs=ladder[-1][3], gain=gain, noise=noise,
                               flat=bool(gain <= noise))
    return out


def _pm(value, digits=2):
    mean, std = value
    return f'{mean:.{digits}f}' + ('' if math.isnan(std) else f' ± {std:.{digits}f}')


def _flat_word(f):
    if math.isnan(f['noise']):
        return 'one seed, so flatness cannot be told'
    return 'flat (less than the seed noise)' if f['flat'] else 'still rising (more than the seed noise)'


def frontier_table(points, score: Score, descriptions=None) -> str:
    """ Markdown: how runs are scored, the ladder (frontier), then every variant with its distance to the frontier
    at equal cost and its verdict. """
    descriptions = descriptions or {v: kind.description for v, kind in VARIANTS.items()}
    rungs = _rungs(points)
    lines = [f'Every run is scored by the {score.describe()}; cost is images through forward+backward.', '',
             '| plain run (the frontier) | epochs | cost (k images) | top-1 |', '| --- | --- | --- | --- |']
    for method, ladder in rungs.items():
        for cost, acc, std, e in ladder:
            lines.append(f'| {method} | {e} | {cost / 1e3:.1f} | {_pm((acc, std))} |')
    flat = flattening(points)
    lines += [''] + [f'Last rung of {m} ({f["from_epochs"]} -> {f["to_epochs"]} epochs): {f["gain"]:+.2f} '
                     f'points against a seed std of {f["noise"]:.2f}: {_flat_word(f)}.' for m, f in flat.items()]
    lines += ['', '| variant | what it is | epochs | seeds | cost (k images) | x plain epoch | top-1 | '
                  'vs frontier at equal cost: mean ± std [95% interval] | verdict |',
              '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    base = min((c for ladder in rungs.values() for c, _, _, _ in ladder[:1]), default=math.nan)
    base_epochs = min((ladder[0][3] for ladder in rungs.values() if ladder), default=1)
    for row in judge(points, score):
        per_epoch = row['cost'] / row['epochs'] / (base / base_epochs) if base == base else math.nan
        distance = row['distance'].text() if row['distance'] else '–'
        lines.append(f'| {row["variant"]} | {descriptions.get(row["variant"], "")} | {row["epochs"]} | {row["seeds"]} '
                     f'| {row["cost"] / 1e3:.1f} | {per_epoch:.2f} | {_pm(row["top1"])} | {distance} | '
                     f'{row["verdict"]} |')
    lines += ['', 'Distance: per seed, the variant\'s top-1 minus that seed\'s frontier at the variant\'s cost; '
                  'the interval is the 95% t-interval over seeds.']
    return '\n'.join(lines) + '\n'


def plot_frontier(points, path, title):
    """ Top-1 against cost: the ladder's rungs (mean ± std) and the frontier line, every variant (mean ± std). """
    from matplotlib.figure import Figure
    fig = Figure(figsize=(9, 5.6), layout='constrained')
    ax = fig.subplots()
    rungs = _rungs(points)
    costs = sorted(c for ladder in rungs.values() for c, _, _, _ in ladder)
    if costs:  # a report of unfinished runs may hold no plain run yet: no frontier to draw
        top = max([costs[-1]] + [p['cost'] for p in points]) * 1.05
        grid = np.exp(np.linspace(math.log(costs[0]), math.log(top), 200))
        ax.plot(grid / 1e3, [frontier_at(rungs, c) for c in grid], color='black', lw=1.5,
                label='plain-training frontier (mean over seeds)')
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


def score_of(runner: Runner, specs: Sequence[RunSpec]) -> Score:
    """The plan's score rule, with the size of the validation set its runs are scored on."""
    identity = runner.identity(specs[0])
    return Score(last_k=specs[0].last_k, val_images=sum(identity['val']['classes'].values()),
                 split=f'{identity["val"]["folder"]}/')


def run_frontier(runner: Runner, specs: Sequence[RunSpec], title: str, report_only: bool = False) -> Dict:
    """ Train `specs` (or, with `report_only`, read the finished ones) and write ``frontier.md``, ``frontier.png``
    and ``frontier.json`` in the runner's folder.

    Returns:
        dict(points, table (markdown), picture (path), missing (names of unfinished runs))
    """
    if report_only:
        results, missing = runner.gather(specs)
        if not results:
            raise RunnerError(f'{runner.out} holds no finished run of this plan: run it without --report-only first')
    else:
        results, missing = runner.run(specs), []
    points = [point(results[s.name]) for s in specs if s.name in results]
    table = frontier_table(points, score_of(runner, specs))
    if missing:
        table = (f'**Incomplete: {len(missing)} planned runs have not finished** ({", ".join(missing)}); a row with '
                 f'fewer seeds than planned is not a result yet.\n\n' + table)
    out = runner.out
    (out / 'frontier.md').write_text(table)
    (out / 'frontier.json').write_text(json.dumps(points, indent=1))
    picture = plot_frontier(points, out / 'frontier.png', title)
    return dict(points=points, table=table, picture=picture, missing=missing)


def _parser():
    parser = argparse.ArgumentParser(
        prog='timm-synermix-frontier', description=__doc__.split('\n\n')[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__[__doc__.index('Example'):],
        allow_abbrev=False)
    parser.add_argument('data_dir', metavar='DATA_DIR', help='ImageFolder root with train/ and val/')
    parser.add_argument('--epochs', type=int, required=True, help='base epochs (the variants\' schedule)')
    parser.add_argument('--ladder', type=float, nargs='+', default=[1, 2, 4], help='plain-run budgets, in multiples '
                        'of --epochs (default: 1 2 4)')
    parser.add_argument('--variants', nargs='+', default=['synermix', 'synermix-intra', 'mixup-supplemented'],
                        metavar='V', help=f'SynerMix variants and controls (valid: {", ".join(VARIANTS)})')
    parser.add_argument('--beta', type=float, default=None, help='β of every variant with an intra term '
                        '(default: the method\'s, 0.1 with MixUp and 0.5 without)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--last-k', type=int, default=3, help='score every run by the mean top-1 of its last K '
                        'epochs (default: 3)')
    parser.add_argument('--out', required=True, help='output folder (runs/, frontier.md, frontier.png)')
    parser.add_argument('--workers', type=int, default=None, help='runs at a time (default: one per CUDA device, '
                        'else 2)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per run (default: 1)')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--dry-run', action='store_true', help='check the plan, print its train.py commands, write '
                      'nothing')
    mode.add_argument('--plan-only', action='store_true', help='check the plan, record it in --out and print one '
                      'command per run (for a scheduler); gather with --report-only')
    mode.add_argument('--report-only', action='store_true', help='train nothing: write the report from the '
                      'finished runs, naming the others')
    return parser


def _workers(requested, extra) -> int:
    if requested:
        return requested
    if option_value(extra, 'device', 'cpu').startswith('cuda'):
        import torch
        return max(1, torch.cuda.device_count())
    return 2


def main(argv=None):
    own, extra = split_argv(argv)
    args = _parser().parse_args(own)
    command = shlex.join(['timm-synermix-frontier'] + [a for a in own if a not in ('--report-only',)]
                         + (['--', *extra] if extra else []))
    try:
        extra = user_args(extra)
        betas = {v: args.beta for v in args.variants} if args.beta is not None else None
        specs = plan_frontier(args.data_dir, args.epochs, args.ladder, args.variants, args.seeds, extra=extra,
                              last_k=args.last_k, betas=betas)
        runner = Runner(args.out, command=command, workers=_workers(args.workers, extra), threads=args.threads)
        if args.report_only and not (runner.out / 'runs').is_dir():
            raise RunnerError(f'{runner.out} holds no frontier runs: pass the --out of an earlier run')
        if args.dry_run:
            runner.check(specs)
            for spec in specs:
                print(f'{spec.role:7s} {shlex.join(runner.command_of(spec))}')
            return 0
        with runner:
            if args.plan_only:
                lines = runner.plan_lines(specs)
                (runner.out / 'plan.sh').write_text('\n'.join(lines) + '\n')
                print('\n'.join(lines))
                print(f'# {len(lines)} commands (also in {runner.out / "plan.sh"}); then: {command} --report-only',
                      file=sys.stderr)
                return 0
            result = run_frontier(runner, specs, f'{args.data_dir}: accuracy against cost',
                                  report_only=args.report_only)
    except RunnerError as e:
        print(f'frontier: error: {e}', file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f'frontier: interrupted before any run started; to start again: {command}', file=sys.stderr)
        return 130
    print(result['table'])
    print(f'picture: {result["picture"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
