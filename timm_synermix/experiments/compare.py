""" The paper's method table over several seeds: train.py runs, a mean ± std table and the report pictures.

Each run is ``train.py DATA_DIR --method M --seed S`` through the experiments' runner (``runner.py``), in
``OUT/runs/<method>-s<seed>`` (``OUT/runs/<method>-b<beta>-s<seed>`` when betas are compared). Every run is scored
by the mean top-1 of its last k epochs (``--last-k``). Finished runs are reused when their arguments and data match,
an interrupted run resumes from its checkpoint, and progress lines stream through, prefixed with the run name
(full logs in ``OUT/logs/<run>.log``).

With ``--beta-protocol`` (the paper's §4.1, docs/method.md §1), each SynerMix method first sweeps
beta over the paper's grid on a stratified 10% holdout of the training set (``--val-holdout 0.1``, first seed,
``OUT/runs/sweep-<method>-b<beta>-s<seed>``), picks the beta with the best holdout score (ties go to the smaller
beta) and then trains on the full training set with that beta over all seeds.

Outputs in OUT: ``results.md`` (the table, and the sweep when run), ``tsne.png``, ``accuracy_curves.png``,
``accuracy_vs_beta.png`` (from the sweep, or from runs with several betas), ``pair_probability.png``.

Example:
    python -m timm_synermix.experiments.compare data/digits --methods baseline mixup synermix-intra synermix \\
        --seeds 0 1 2 --epochs 10 --out results --beta-protocol -- --model resnet10t --img-size 32
"""
import argparse
import math
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from ..method.presets import PRESETS, get_preset
from .runner import Runner, RunnerError, RunSpec, beta_text, split_argv, user_args
from .runs import format_table, load_run

__all__ = ['BETA_GRIDS', 'HOLDOUT', 'plan_runs', 'select_best_beta', 'run_compare', 'main']

# the paper's β grids (§4.1), from the presets
BETA_GRIDS = {name: p.beta_grid for name, p in PRESETS.items() if p.intra}
HOLDOUT = 0.1


def _betas_of(preset, betas, beta_protocol):
    """The β values a method is trained with: None for its default (or the sweep's choice)."""
    if not preset.intra:
        return [None]
    if betas is None:
        return list(preset.beta_grid) if beta_protocol else [None]
    values = betas.get(preset.name, preset.beta_grid if beta_protocol else [None]) if isinstance(betas, dict) \
        else betas
    values = [None if v is None else float(v) for v in values]
    if any(v is not None and not 0. <= v <= 1. for v in values) or not values or len(set(values)) != len(values):
        raise RunnerError(f'betas for {preset.name} must be distinct values in [0, 1], got {values}')
    return values


def plan_runs(data_dir, methods, seeds, epochs, extra=(), last_k=3, betas=None, beta_protocol=False):
    """ The train.py runs of a comparison, in the order they are run.

    Args:
        data_dir: ImageFolder root.
        methods: method presets (``timm_synermix.PRESETS``), e.g. ['baseline', 'synermix'].
        seeds: seeds; every method is trained once per seed on the full training set.
        epochs: epochs of every run.
        extra: the train.py arguments of every run (``runner.user_args``).
        last_k: the score: mean top-1 of the last k epochs.
        betas: beta values for the SynerMix methods (those with an intra term): None for the paper's grid per
            method under ``beta_protocol`` and the method's default otherwise; a list for all SynerMix methods;
            or a dict {method: list}.
        beta_protocol: sweep the betas on a holdout first (one run per beta, first seed, role 'sweep'), then
            train the final runs with the best beta (their ``beta`` is None in the plan: it is chosen after the
            sweep). Without it, each given beta is a final run over all seeds.

    Returns:
        list of `RunSpec`: sweep runs first; final runs seed by seed, so an interrupted comparison has whole seeds.

    Example:
        >>> [s.name for s in plan_runs('data', ['baseline', 'synermix'], [0, 1], epochs=5)]
        ['baseline-s0', 'synermix-s0', 'baseline-s1', 'synermix-s1']
    """
    methods, seeds = list(methods), list(seeds)
    if not methods:
        raise RunnerError('no methods given: pass --methods, e.g. --methods baseline synermix')
    if not seeds:
        raise RunnerError('no seeds given: pass --seeds, e.g. --seeds 0 1 2')
    try:
        presets = [get_preset(m) for m in methods]
    except ValueError as e:
        raise RunnerError(str(e))
    if len(set(methods)) != len(methods) or len(set(seeds)) != len(seeds):
        raise RunnerError(f'methods and seeds must not repeat, got --methods {methods} --seeds {seeds}')
    common = dict(data=str(Path(data_dir).resolve()), epochs=epochs, last_k=last_k, extra=tuple(extra))
    plan = []
    if beta_protocol:
        for p in presets:
            for b in (_betas_of(p, betas, True) if p.intra else []):
                plan.append(RunSpec(name=f'sweep-{p.name}-b{beta_text(b)}-s{seeds[0]}', preset=p, seed=seeds[0],
                                    beta=b, options=('--val-holdout', beta_text(HOLDOUT)), variant=p.name,
                                    label=p.name, role='sweep', **common))
    for s in seeds:
        for p in presets:
            grid = _betas_of(p, betas, beta_protocol)
            for b in ([None] if beta_protocol else grid):
                name = f'{p.name}-b{beta_text(b)}-s{s}' if len(grid) > 1 and not beta_protocol or b is not None \
                    else f'{p.name}-s{s}'
                plan.append(RunSpec(name=name, preset=p, seed=s, beta=b, variant=p.name, label=p.name,
                                    role='final', **common))
    return plan


def select_best_beta(results):
    """ The beta with the best holdout top-1.

    Args:
        results: {beta: holdout top-1} or an iterable of (beta, holdout top-1) pairs. None / NaN scores
            (a run without an eval) are ignored.

    Returns:
        the best beta (float). Ties go to the smaller beta: the smaller intra weight is the one closer to
        the inter-class method alone, so a tie does not claim more effect of the intra term than measured.

    Example:
        >>> select_best_beta({0.05: 91.0, 0.1: 92.5, 0.2: 92.5, 0.4: 90.0})
        0.1
    """
    pairs = list(results.items()) if isinstance(results, dict) else list(results)
    scored = [(float(b), float(t)) for b, t in pairs if t is not None and not math.isnan(float(t))]
    if not scored:
        raise RunnerError(f'no beta has a holdout top-1 to choose from (got {pairs})')
    return max(scored, key=lambda bt: (bt[1], -bt[0]))[0]


def _with_chosen(spec, chosen):
    beta = chosen.get(spec.preset.name)
    if beta is None:
        return spec
    return replace(spec, beta=beta, name=f'{spec.preset.name}-b{beta_text(beta)}-s{spec.seed}')


def run_compare(runner, plan, report=True, max_tsne_points=1000, pair_trials=2000, note=None):
    """ Train the plan's runs (the sweep first, then the final runs with the chosen betas), then write results.md
    and the pictures in the runner's folder.

    Args:
        runner: A `Runner` holding the output folder.
        plan: `plan_runs(...)`.
        report: also draw the pictures with ``report.make_report``.
        max_tsne_points, pair_trials: passed to ``make_report``.
        note: line under the table's title (default: the data dir, the train.py arguments and the score).

    Returns:
        dict(table: results.md path, text: the table, pictures: {name: path}, chosen_betas: {method: beta},
        results: {name: RunResult})
    """
    runner.check(plan)
    sweep = [s for s in plan if s.role == 'sweep']
    done = runner.run(sweep) if sweep else {}
    chosen = {}
    for method in dict.fromkeys(s.preset.name for s in sweep):
        scores = [(s.beta, done[s.name].top1) for s in sweep if s.preset.name == method]
        chosen[method] = select_best_beta(scores)
        by_beta = ', '.join(f'{beta_text(b)}: {t:.2f}' for b, t in scores)
        runner.emit(f'compare: {method}: holdout top-1 by β {by_beta} -> β = {beta_text(chosen[method])}')
    finals = [_with_chosen(s, chosen) for s in plan if s.role == 'final']
    done.update(runner.run(finals))
    if note is None:
        note = (f'Data: `{finals[0].data}`; train.py arguments of every run: `{shlex.join(finals[0].extra)}`; '
                f'{finals[0].epochs} epochs; top-1 is the mean of the last {finals[0].last_k} epochs.')
    final_records = [load_run(str(done[s.name].path), with_features=False) for s in finals]
    sweep_records = [load_run(str(done[s.name].path), with_features=False) for s in sweep]
    pictures = _write_report(runner, final_records, sweep_records, chosen, note, report,
                             dict(max_tsne_points=max_tsne_points, pair_trials=pair_trials))
    table = runner.out / 'results.md'
    return dict(table=str(table), text=table.read_text(), pictures=pictures, chosen_betas=chosen, results=done)


def _write_report(runner, final_records, sweep_records, chosen, note, report, report_kwargs):
    """results.md, and with `report` the pictures (`report.make_report`); returns {name: picture path}."""
    if not report:
        (runner.out / 'results.md').write_text(format_table(final_records, sweep_records or None, chosen, note))
        return {}
    from .report import make_report
    runner.emit('compare: drawing the report pictures')
    with _thread_limit(runner.threads):
        pictures = make_report([r['path'] for r in final_records], str(runner.out),
                               sweep_dirs=[r['path'] for r in sweep_records], chosen=chosen, note=note,
                               **report_kwargs)
    pictures.pop('results')
    return pictures


def _thread_limit(threads):
    """ Cap this process's BLAS/OpenMP pools (t-SNE) at ``threads``. With torch imported in the same process,
    sklearn's t-SNE on a busy 2-core CPU was measured 8x slower (80 s against 10 s) without the cap. """
    from contextlib import nullcontext
    if not threads:
        return nullcontext()
    try:
        import sklearn.manifold  # noqa: F401  loads t-SNE's OpenMP runtime first: the cap only reaches loaded pools
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn brings threadpoolctl; without them, run uncapped
        return nullcontext()
    return threadpool_limits(threads)


def main(argv=None):
    own, extra = split_argv(argv)
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.compare', allow_abbrev=False,
        usage='%(prog)s DATA_DIR --methods M [M ...] --seeds S [S ...] --epochs E --out DIR [options] '
              '[-- train.py args]',
        description='Train the paper\'s methods over seeds with train.py and write a mean ± std table and the '
                    'report pictures. Arguments after "--" go to every train.py run.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__[__doc__.index('Example'):])
    parser.add_argument('data_dir', metavar='DATA_DIR', help='ImageFolder root with train/ and val/ folders')
    parser.add_argument('--methods', nargs='+', default=['baseline', 'mixup', 'synermix-intra', 'synermix'],
                        metavar='M', help=f'methods (default: baseline mixup synermix-intra synermix); valid: '
                                          f'{", ".join(PRESETS)}')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2], metavar='S', help='seeds (default: 0 1 2)')
    parser.add_argument('--epochs', type=int, required=True, help='epochs of every run')
    parser.add_argument('--last-k', type=int, default=3, help='score every run by the mean top-1 of its last K '
                        'epochs (default: 3)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--beta-protocol', action='store_true',
                        help='choose beta per SynerMix method on a stratified 10%% holdout over the paper\'s grid, '
                             'then train with it over the seeds')
    parser.add_argument('--betas', nargs='+', type=float, default=None, metavar='B',
                        help='beta values for the SynerMix methods (default: the paper\'s grids with '
                             '--beta-protocol, else the method\'s default beta); without --beta-protocol each is '
                             'trained over all seeds')
    parser.add_argument('--train-script', default=None,
                        help='a train.py-like script to run (default: python -m timm_synermix.trainer)')
    parser.add_argument('--workers', type=int, default=1, help='runs at a time (default: 1)')
    parser.add_argument('--threads', type=int, default=None,
                        help='OMP_NUM_THREADS per run (default: inherited; 1 is fastest on a busy 2-core CPU)')
    parser.add_argument('--max-tsne-points', type=int, default=1000, help='features per t-SNE panel')
    parser.add_argument('--pair-trials', type=int, default=2000, help='simulated batches per point (Fig. 1)')
    parser.add_argument('--no-report', action='store_true', help='write the table only, no pictures')
    parser.add_argument('--dry-run', action='store_true', help='check the plan, print its runs and exit')
    args = parser.parse_args(own)
    command = shlex.join([parser.prog, *own] + (['--', *extra] if extra else []))
    try:
        if args.train_script and not Path(args.train_script).is_file():
            raise RunnerError(f'train script not found at {args.train_script}: pass an existing --train-script PATH, '
                              f'or leave it out to run the installed trainer (python -m timm_synermix.trainer)')
        plan = plan_runs(args.data_dir, args.methods, args.seeds, args.epochs, extra=user_args(extra),
                         last_k=args.last_k, betas=args.betas, beta_protocol=args.beta_protocol)
        runner = Runner(args.out, command=command, workers=args.workers, threads=args.threads,
                        train_script=args.train_script)
        if args.dry_run:
            runner.check(plan)
            for spec in plan:
                later = spec.role == 'final' and args.beta_protocol and spec.preset.intra
                print(f'{spec.role:5s} {spec.name:28s} {shlex.join(runner.command_of(spec))}'
                      + ('  (+ --synermix-beta from the sweep)' if later else ''))
            return 0
        with runner:
            out = run_compare(runner, plan, report=not args.no_report, max_tsne_points=args.max_tsne_points,
                              pair_trials=args.pair_trials)
    except RunnerError as e:
        print(f'compare: error: {e}', file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f'compare: interrupted; to continue: {command}', file=sys.stderr)
        return 130
    print()
    print(out['text'])
    print(f'table: {out["table"]}')
    for name, path in out['pictures'].items():
        print(f'{name}: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
