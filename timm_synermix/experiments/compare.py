""" The paper's method table over several seeds: train.py runs, a mean ± std table and the report pictures.

Each run is ``train.py DATA_DIR --method M --seed S`` in a subprocess, written to ``OUT/runs/<method>-s<seed>``
(``OUT/runs/<method>-b<beta>-s<seed>`` when betas are compared). A run whose ``results.json`` exists is
skipped, so an interrupted comparison resumes where it stopped (a run left without ``results.json`` is
restarted from scratch). Progress lines of train.py stream through, prefixed with the run name, and are kept
in ``OUT/logs/<run>.log``.

With ``--beta-protocol`` (the paper's §4.1, docs/method.md §1), each SynerMix method first sweeps
beta over the paper's grid on a stratified 10% holdout of the training set (``--val-holdout 0.1``, first seed,
``OUT/sweep/<method>-b<beta>-s<seed>``), picks the beta with the best holdout top-1 (mean of the last k epochs;
ties go to the smaller beta) and then trains on the full training set with that beta over all seeds.

Outputs in OUT: ``results.md`` (the table, and the sweep when run), ``tsne.png``, ``accuracy_curves.png``,
``accuracy_vs_beta.png`` (from the sweep, or from runs with several betas), ``pair_probability.png``.

Example:
    python -m timm_synermix.experiments.compare data/digits --methods baseline mixup synermix-intra synermix \\
        --seeds 0 1 2 --out results --beta-protocol -- --model resnet10t --img-size 32 --epochs 10 --device cpu
"""
import argparse
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..method.presets import PRESETS, get_preset
from .runs import RUN_META, beta_text, format_table, has_intra, load_run

__all__ = ['BETA_GRIDS', 'CompareError', 'plan_runs', 'select_best_beta', 'train_args', 'trainer_command',
           'execute_run', 'run_compare', 'main']

_logger = logging.getLogger(__name__)

# the paper's β grids (§4.1), from the presets
BETA_GRIDS = {name: p.beta_grid for name, p in PRESETS.items() if p.intra}
HOLDOUT = 0.1
# flags compare sets on every train.py command itself
RESERVED_FLAGS = ('--method', '--seed', '--output', '--experiment', '--synermix-beta', '--val-holdout', '--resume',
                  '--data-dir', '--synermix')


class CompareError(Exception):
    """A problem the user can fix (bad arguments, a failed run): reported as one message."""


def plan_runs(methods, seeds, betas=None, beta_protocol=False):
    """ The train.py runs of a comparison, in the order they are run.

    Args:
        methods: method presets (``timm_synermix.PRESETS``), e.g. ['baseline', 'synermix'].
        seeds: seeds; every method is trained once per seed on the full training set.
        betas: beta values for the SynerMix methods (those with an intra term): None for the paper's grid per
            method (``BETA_GRIDS``) under ``beta_protocol`` and train.py's default beta otherwise; a list for
            all SynerMix methods; or a dict {method: list}.
        beta_protocol: sweep the betas on a holdout first (one run per beta, first seed), then train the
            final runs with the best beta (their ``beta`` is None in the plan: it is chosen after the sweep).
            Without it, each given beta is a final run over all seeds.

    Returns:
        list of dicts: name, stage ('sweep' or 'final'), method, seed, beta (float, or None for train.py's
        default / the sweep's choice), holdout (fraction for sweep runs, else None). Sweep runs come first;
        final runs are ordered seed by seed, so an interrupted comparison has whole seeds done.

    Example:
        >>> [r['name'] for r in plan_runs(['baseline', 'synermix'], [0, 1])]
        ['baseline-s0', 'synermix-s0', 'baseline-s1', 'synermix-s1']
    """
    methods, seeds = list(methods), list(seeds)
    if not methods:
        raise CompareError('no methods given: pass --methods, e.g. --methods baseline synermix')
    if not seeds:
        raise CompareError('no seeds given: pass --seeds, e.g. --seeds 0 1 2')
    for m in methods:
        try:
            get_preset(m)
        except ValueError as e:
            raise CompareError(str(e))
    if len(set(methods)) != len(methods) or len(set(seeds)) != len(seeds):
        raise CompareError(f'methods and seeds must not repeat, got --methods {methods} --seeds {seeds}')

    def grid(method):
        if not has_intra(method):
            return [None]
        if betas is None:
            return list(BETA_GRIDS[method]) if beta_protocol else [None]
        values = betas.get(method, BETA_GRIDS[method] if beta_protocol else [None]) if isinstance(betas, dict) \
            else betas
        values = [None if v is None else float(v) for v in values]
        bad = [v for v in values if v is not None and not 0. <= v <= 1.]
        if bad or not values or len(set(values)) != len(values):
            raise CompareError(f'betas for {method} must be distinct values in [0, 1], got {values}')
        return values

    plan = []
    if beta_protocol:
        for m in methods:
            if has_intra(m):
                for b in grid(m):
                    plan.append(dict(name=f'{m}-b{beta_text(b)}-s{seeds[0]}', stage='sweep', method=m,
                                     seed=seeds[0], beta=b, holdout=HOLDOUT))
    for s in seeds:
        for m in methods:
            for b in ([None] if beta_protocol else grid(m)):
                several = not beta_protocol and len(grid(m)) > 1 or b is not None
                name = f'{m}-b{beta_text(b)}-s{s}' if several else f'{m}-s{s}'
                plan.append(dict(name=name, stage='final', method=m, seed=s, beta=b, holdout=None))
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
        raise CompareError(f'no beta has a holdout top-1 to choose from (got {pairs})')
    return max(scored, key=lambda bt: (bt[1], -bt[0]))[0]


def trainer_command(python=None, train_script=None):
    """ The command that trains one run: the package's trainer as a module, or a given train.py-like script. """
    python = python or sys.executable
    return [python, str(train_script)] if train_script else [python, '-m', 'timm_synermix.trainer']


def check_extra_args(extra_args, reserved=RESERVED_FLAGS, instead='--methods / --seeds / --betas / --out'):
    """Refuse a train.py argument that the comparison sets for each run itself."""
    for a in extra_args:
        for flag in reserved:
            if a == flag or a.startswith(flag + '='):
                raise CompareError(f'{flag} is set by the comparison for each run: remove it from the train.py '
                                   f'arguments after "--" (use {instead} instead)')


def train_args(spec, data_dir, output, extra_args=()):
    """ train.py arguments (without the interpreter and script) of one planned run; spec['beta'] must be set
    or None for train.py's default. """
    args = [str(data_dir), '--method', spec['method'], '--seed', str(spec['seed']),
            '--output', str(output), '--experiment', spec['name']]
    if spec['beta'] is not None:
        args += ['--synermix-beta', beta_text(spec['beta'])]
    if spec.get('holdout'):
        args += ['--val-holdout', beta_text(spec['holdout'])]
    return args + [str(a) for a in extra_args]


def _child_env(threads):
    env = dict(os.environ)
    env['PYTHONUNBUFFERED'] = '1'
    env.setdefault('HF_HUB_OFFLINE', '1')  # runs are local; never reach for the hub
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
        env['MKL_NUM_THREADS'] = str(threads)
    return env


def execute_run(name, args, run_dir, train_script=None, python=None, threads=None, log_path=None, stream=None,
                label=None):
    """ Run ``train.py ARGS`` once, unless ``run_dir/results.json`` exists (then it is reused).

    A finished run must have been made with the same arguments (recorded in ``run_dir/compare.json``); a run
    directory without results.json (an interrupted run) is removed and the run restarted.

    Args:
        name: prefix of the streamed progress lines.
        args: train.py arguments; ``--output``/``--experiment`` must point at run_dir.
        run_dir: the run's output directory.
        train_script: a train.py-like script to run instead of ``python -m timm_synermix.trainer``.
        python: interpreter (default: this one).
        threads: OMP_NUM_THREADS of the run (default: inherited).
        log_path: where to keep the run's full output (default: none).
        stream: where progress lines go (default: sys.stdout).
        label: the table row the run belongs to (default: its method), kept in the run's RUN_META file.

    Returns:
        dict(name, run_dir, wall_s, skipped)
    """
    stream = stream or sys.stdout
    if train_script and not Path(train_script).is_file():
        raise CompareError(f'train script not found at {train_script}: pass an existing --train-script PATH, or '
                           f'leave it out to run the installed trainer (python -m timm_synermix.trainer)')
    run_dir = Path(run_dir)
    args = [str(a) for a in args]
    meta_path = run_dir / RUN_META
    if (run_dir / 'results.json').is_file():
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        if meta.get('args', args) != args:
            raise CompareError(
                f'{run_dir} is a finished run made with other arguments:\n  then: {shlex.join(meta["args"])}\n'
                f'  now:  {shlex.join(args)}\nremove it (or pick another --out) to rerun it')
        print(f'[{name}] finished before ({run_dir}/results.json): skipped', file=stream, flush=True)
        return dict(name=name, run_dir=str(run_dir), wall_s=meta.get('wall_s'), skipped=True)
    if run_dir.exists():
        print(f'[{name}] {run_dir} has no results.json (interrupted): restarting it', file=stream, flush=True)
        shutil.rmtree(run_dir)

    cmd = trainer_command(python, train_script) + args
    print(f'[{name}] $ {shlex.join(cmd)}', file=stream, flush=True)
    log = None
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, 'w')
    tail = []
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=_child_env(threads))
    try:
        for line in proc.stdout:
            line = line.rstrip('\n')
            print(f'[{name}] {line}', file=stream, flush=True)
            if log:
                log.write(line + '\n')
            tail = (tail + [line])[-30:]
        returncode = proc.wait()
    except BaseException:  # Ctrl-C or a broken stream: do not leave the run training in the background
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        if log:
            log.close()
    wall_s = time.perf_counter() - start
    if returncode != 0:
        where = f'; full log: {log_path}' if log_path else ''
        raise CompareError(f'run {name} failed (train.py exit code {returncode}){where}. Last lines:\n'
                           + '\n'.join(tail[-12:]))
    if not (run_dir / 'results.json').is_file():
        raise CompareError(f'run {name} ended without {run_dir}/results.json: is --output/--experiment right, '
                           f'and does {shlex.join(trainer_command(python, train_script))} write this project\'s outputs?')
    meta_path.write_text(json.dumps(dict(args=args, wall_s=wall_s, label=label), indent=2))
    print(f'[{name}] done in {wall_s:.1f} s', file=stream, flush=True)
    return dict(name=name, run_dir=str(run_dir), wall_s=wall_s, skipped=False)


def run_compare(data_dir, methods, seeds, out_dir, extra_args=(), beta_protocol=False, betas=None,
                train_script=None, python=None, threads=None, report=True, max_tsne_points=1000,
                pair_trials=2000, note=None, stream=None):
    """ Train every planned run (skipping finished ones), then write results.md and the pictures in out_dir.

    Args:
        data_dir: ImageFolder root with train/ and val/ (or validation/) folders.
        methods, seeds, betas, beta_protocol: see ``plan_runs``.
        out_dir: output folder (runs/, sweep/, logs/, results.md, PNGs).
        extra_args: further train.py arguments, the same for every run (model, epochs, lr, ...).
        train_script: a train.py-like script to run (default: ``python -m timm_synermix.trainer``).
        python: interpreter for train.py (default: this one).
        threads: OMP_NUM_THREADS of each run (default: inherited).
        report: also draw the pictures with ``report.make_report``.
        max_tsne_points, pair_trials: passed to ``make_report``.
        note: line under the table's title (default: the data dir and the train.py arguments).
        stream: where progress goes (default: sys.stdout).

    Returns:
        dict(table: results.md path, text: the table, pictures: {name: path}, chosen_betas: {method: beta},
        runs: [{name, run_dir, wall_s, skipped}])
    """
    stream = stream or sys.stdout
    extra_args = [str(a) for a in extra_args]
    check_extra_args(extra_args)
    data_dir = os.path.abspath(data_dir)
    if not os.path.isdir(data_dir):
        raise CompareError(f'data dir {data_dir} does not exist: pass an ImageFolder root with train/ and val/ '
                           f'(e.g. written by python -m timm_synermix.experiments.digits)')
    out_dir = Path(out_dir).resolve()
    plan = plan_runs(methods, seeds, betas=betas, beta_protocol=beta_protocol)
    root = {'sweep': out_dir / 'sweep', 'final': out_dir / 'runs'}
    done, chosen = [], {}

    def run(spec):
        output = root[spec['stage']]
        result = execute_run(spec['name'], train_args(spec, data_dir, output, extra_args), output / spec['name'],
                             train_script=train_script, python=python, threads=threads,
                             log_path=out_dir / 'logs' / f'{spec["stage"]}-{spec["name"]}.log', stream=stream)
        done.append(result)
        return result

    sweep = [s for s in plan if s['stage'] == 'sweep']
    finals = [s for s in plan if s['stage'] == 'final']
    total = len(plan)
    print(f'compare: {total} runs ({len(sweep)} β-sweep on a {HOLDOUT:.0%} holdout, {len(finals)} final) '
          f'in {out_dir}', file=stream, flush=True)
    sweep_records = []
    for i, spec in enumerate(sweep):
        print(f'compare: run {i + 1}/{total}: {spec["name"]} (β sweep, holdout)', file=stream, flush=True)
        result = run(spec)
        sweep_records.append(load_run(result['run_dir'], with_features=False))
    for method in dict.fromkeys(s['method'] for s in sweep):
        scores = [(r['beta'], r['results'].get('last_k_mean_top1')) for r in sweep_records if r['method'] == method]
        chosen[method] = select_best_beta(scores)
        print(f'compare: {method}: holdout top-1 by β '
              + ', '.join(f'{beta_text(b)}: {t:.2f}' for b, t in scores if t is not None)
              + f' -> β = {beta_text(chosen[method])}', file=stream, flush=True)
    final_records = []
    for i, spec in enumerate(finals):
        if spec['method'] in chosen:
            spec = dict(spec, beta=chosen[spec['method']])
        print(f'compare: run {len(sweep) + i + 1}/{total}: {spec["name"]}', file=stream, flush=True)
        result = run(spec)
        final_records.append(load_run(result['run_dir'], with_features=False))

    if note is None:
        note = f'Data: `{data_dir}`; train.py arguments of every run: `{shlex.join(extra_args) or "(defaults)"}`.'
    table = out_dir / 'results.md'
    pictures = _write_report(out_dir, final_records, sweep_records, chosen, note, report, threads,
                             dict(max_tsne_points=max_tsne_points, pair_trials=pair_trials), stream)
    return dict(table=str(table), text=table.read_text(), pictures=pictures, chosen_betas=chosen, runs=done)


def _write_report(out_dir, final_records, sweep_records, chosen, note, report, threads, report_kwargs, stream):
    """results.md, and with `report` the pictures (`report.make_report`); returns {name: picture path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if not report:
        (out_dir / 'results.md').write_text(format_table(final_records, sweep_records or None, chosen, note))
        return {}
    from .report import make_report
    print('compare: drawing the report pictures', file=stream, flush=True)
    with _thread_limit(threads):
        pictures = make_report([r['path'] for r in final_records], str(out_dir),
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


def split_argv(argv):
    """(the command's own arguments, those after '--' for every train.py run)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--' in argv:
        i = argv.index('--')
        return argv[:i], argv[i + 1:]
    return argv, []


def main(argv=None):
    own, extra = split_argv(argv)
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.compare',
        usage='%(prog)s DATA_DIR --methods M [M ...] --seeds S [S ...] --out DIR [options] [-- train.py args]',
        description='Train the paper\'s methods over seeds with train.py and write a mean ± std table and the '
                    'report pictures. Arguments after "--" go to every train.py run.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example:\n  python -m timm_synermix.experiments.compare data/digits --methods baseline mixup synermix-intra '
               'synermix \\\n      --seeds 0 1 2 --out results --beta-protocol -- --model resnet10t --img-size 32 '
               '--epochs 10')
    parser.add_argument('data_dir', metavar='DATA_DIR', help='ImageFolder root with train/ and val/ folders')
    parser.add_argument('--methods', nargs='+', default=['baseline', 'mixup', 'synermix-intra', 'synermix'],
                        metavar='M', help=f'methods (default: baseline mixup synermix-intra synermix); valid: '
                                          f'{", ".join(PRESETS)}')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2], metavar='S', help='seeds (default: 0 1 2)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--beta-protocol', action='store_true',
                        help='choose beta per SynerMix method on a stratified 10%% holdout over the paper\'s grid, '
                             'then train with it over the seeds')
    parser.add_argument('--betas', nargs='+', type=float, default=None, metavar='B',
                        help='beta values for the SynerMix methods (default: the paper\'s grids with '
                             '--beta-protocol, else train.py\'s default beta); without --beta-protocol each is '
                             'trained over all seeds')
    parser.add_argument('--train-script', default=None,
                        help='a train.py-like script to run (default: python -m timm_synermix.trainer)')
    parser.add_argument('--threads', type=int, default=None,
                        help='OMP_NUM_THREADS per run (default: inherited; 1 is fastest on a busy 2-core CPU)')
    parser.add_argument('--max-tsne-points', type=int, default=1000, help='features per t-SNE panel')
    parser.add_argument('--pair-trials', type=int, default=2000, help='simulated batches per point (Fig. 1)')
    parser.add_argument('--no-report', action='store_true', help='write the table only, no pictures')
    parser.add_argument('--dry-run', action='store_true', help='print the planned runs and exit')
    args = parser.parse_args(own)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    try:
        if args.dry_run:
            plan = plan_runs(args.methods, args.seeds, args.betas, args.beta_protocol)
            for spec in plan:
                output = Path(args.out) / ('sweep' if spec['stage'] == 'sweep' else 'runs')
                later = args.beta_protocol and spec['stage'] == 'final' and has_intra(spec['method'])
                print(f'{spec["stage"]:5s} {spec["name"]:28s} train.py '
                      f'{shlex.join(train_args(spec, args.data_dir, output, extra))}'
                      + ('  (+ --synermix-beta from the sweep)' if later else ''))
            return 0
        out = run_compare(args.data_dir, args.methods, args.seeds, args.out, extra_args=extra,
                          beta_protocol=args.beta_protocol, betas=args.betas, train_script=args.train_script,
                          threads=args.threads, report=not args.no_report, max_tsne_points=args.max_tsne_points,
                          pair_trials=args.pair_trials)
    except CompareError as e:
        print(f'compare: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('compare: interrupted; run the same command again to resume (finished runs are skipped)',
              file=sys.stderr)
        return 130
    print()
    print(out['text'])
    print(f'table: {out["table"]}')
    for name, path in out['pictures'].items():
        print(f'{name}: {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
