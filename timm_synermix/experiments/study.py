""" When does SynerMix pay? The regime map: every variant against the plain-training frontier, per regime.

Glyphs rendered from real font files (``fonts.py``), validated on font families never seen in training. In each
regime baseline and MixUp train on a ladder of budgets; the frontier is the best top-1 they reach for a given cost
(images through forward+backward, ``frontier.py``), and every SynerMix variant and control is judged by its
distance above or below it at its own cost, mean ± std over seeds:

* ``scratch-short``: from scratch, the base epochs; the ladder 1x, 2x, 4x.
* ``scratch-long``: from scratch, the variants at 3x the base epochs; the same ladder, extended to 8x and 11x so that
  it reaches the cost of SynerMix-Intra's 3.6x passes instead of being held flat past 4x.
* ``finetune``: a backbone pretrained once on the digits and Latin letters (all training fonts), fine-tuned on the
  Greek and Cyrillic letters that are no homoglyph of a Latin one, with few fonts per class.

The variants: the paper's SynerMix and SynerMix-Intra on supplemented batches; paired batches (several pairs of
a class per batch, and B/2 distinct classes); the intra term from the augmented view (1.0x); the intra term every
4th step with plain batches between; the clean-view controls (β·CE(originals), docs/method.md §6); and the batch
compositions alone (plain training and MixUp on supplemented and paired batches, repeated augmentation).

β is not tuned here: every intra variant and control uses β = 0.4, the value the paper's holdout protocol chose
for both SynerMix and SynerMix-Intra on this kind of data (124 glyph classes from scratch; ``docs/study.md``).
Runs go two at a time, one torch thread each; finished runs are reused, so an interrupted study resumes.

Outputs in OUT: ``results.md`` (one section per regime), ``frontier_<regime>.png``, ``study.json`` (every run:
regime, method, variant, epochs, seed, cost, top-1), ``data_manifest_<data>.json``.

Example:
    python -m timm_synermix.experiments.study --out results/study          # make study
    python -m timm_synermix.experiments.study --quick --out study_output   # make study-quick, about a minute
"""
import argparse
import json
import re
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..method.presets import get_preset
from .frontier import frontier_table, judge, plan_frontier, plot_frontier, point
from .runner import Runner, RunnerError, RunSpec
from .scores import Score, paired_difference

__all__ = ['FULL', 'QUICK', 'BETA', 'DECOMPOSITION', 'recipe', 'regime_plans', 'decomposition_table', 'run_study',
           'main']

BETA = 0.4
# Every variant and control (frontier.VARIANTS) in the short regimes; the long schedule takes the subset the
# 3-hour budget allows (docs/study.md: what was traded).
ALL = ('synermix', 'synermix-intra', 'clean-view', 'clean-view-mixup', 'baseline-supplemented',
       'mixup-supplemented', 'synermix-paired', 'baseline-paired', 'mixup-paired', 'synermix-paired-distinct',
       'baseline-paired-distinct', 'mixup-paired-distinct', 'synermix-intra-aug-paired-distinct',
       'synermix-intra-every4', 'baseline-repeats2')
LONG = ('synermix-intra', 'clean-view', 'baseline-supplemented', 'synermix-intra-aug-paired-distinct',
        'baseline-paired-distinct')
SCRIPTS = ('latin', 'greek', 'cyrillic')
FULL = dict(
    model='resnet10t', size=24, batch=32, lr=0.05, seeds=(0, 1, 2), last_k=3, workers=2, log_interval=50,
    scratch=dict(train_fonts=6, val_fonts=4, epochs=6, ladder=(1, 2, 4), long_ladder=(1, 2, 4, 8, 11), long_factor=3,
                 variants=ALL, long_variants=LONG, scripts=SCRIPTS),
    pretrain=dict(train_fonts=20, val_fonts=4, epochs=12, scripts=('latin',)),
    finetune=dict(train_fonts=6, val_fonts=4, epochs=8, ladder=(1, 2, 4), variants=ALL, scripts=('greek', 'cyrillic')),
)
# A smoke run of the same pipeline. matplotlib's fonts draw Greek and Cyrillic in one design family only, too few
# to hold one out, so the quick fine-tuning regime reuses the Latin classes.
QUICK = dict(
    model='test_resnet', size=16, batch=16, lr=0.05, seeds=(0,), last_k=1, workers=2, log_interval=10,
    scratch=dict(train_fonts=3, val_fonts=2, epochs=1, ladder=(1, 2), long_ladder=(1, 2), long_factor=2,
                 variants=('synermix-intra', 'clean-view', 'baseline-paired-distinct'),
                 long_variants=('synermix-intra',), scripts=('latin',)),
    pretrain=dict(train_fonts=3, val_fonts=2, epochs=1, scripts=('latin',)),
    finetune=dict(train_fonts=3, val_fonts=2, epochs=1, ladder=(1, 2), variants=('synermix', 'mixup-supplemented'),
                  scripts=('latin',)),
)
TITLES = {'scratch-short': 'From scratch, short schedule', 'scratch-long': 'From scratch, long schedule (3x epochs)',
          'finetune': 'Fine-tuning a pretrained backbone on new classes'}
DATA = ('scratch', 'pretrain', 'finetune')


def recipe(cfg, device='cpu'):
    """train.py arguments shared by every run: SGD with cosine decay, crop-only augmentation."""
    # No flips: a mirrored glyph is another character (or none).
    return ('--model', cfg['model'], '--img-size', str(cfg['size']), '--device', device, '-j', '0',
            '-b', str(cfg['batch']), '--opt', 'sgd', '--lr', str(cfg['lr']), '--momentum', '0.9',
            '--weight-decay', '5e-4', '--sched', 'cosine', '--warmup-epochs', '0', '--smoothing', '0',
            '--scale', '0.6', '1', '--ratio', '0.8', '1.25', '--hflip', '0', '--color-jitter', '0',
            '--mixup-mode', 'elem', '--checkpoint-hist', '1', '--log-interval', str(cfg['log_interval']),
            '--val-split', 'val')


def _font_settings(cfg, name):
    part = cfg[name]
    return dict(size=cfg['size'], scripts=part['scripts'], train_fonts_per_class=part['train_fonts'],
                val_fonts_per_class=part['val_fonts'], min_train_fonts=part['train_fonts'])


def _build(out, name, cfg, fonts_dirs, runner):
    from .fonts import build_font_dataset, dropped_note
    data = build_font_dataset(out / 'data' / name, fonts_dirs=fonts_dirs, **_font_settings(cfg, name))
    counts = {s: sum(data['counts'][s].values()) for s in ('train', 'val')}
    runner.emit(f'study: data {name}: {data["num_classes"]} classes, {counts["train"]} train / {counts["val"]} val '
                f'images ({"reused" if data["reused"] else "written"})')
    if dropped_note(data['manifest']):
        runner.emit(f'study: data {name}: {dropped_note(data["manifest"])}')
    # The manifest names every font file; those shipped inside Python packages lose this machine's prefix.
    manifest = (Path(data['root']) / 'manifest.json').read_text()
    (out / f'data_manifest_{name}.json').write_text(re.sub(r'"[^"]*/site-packages/', '"<site-packages>/', manifest))
    return dict(data, **counts)


def _read(out, name, cfg):
    """The data set a finished study used, read without writing (for --report-only)."""
    from .fonts import read_font_dataset
    data = read_font_dataset(out / 'data' / name)
    copy = out / f'data_manifest_{name}.json'
    if data is None and copy.is_file():  # a clone holds the manifest's copy, not the data
        manifest = json.loads(copy.read_text())
        data = dict(root=str(out / 'data' / name), num_classes=len(manifest['classes']), counts=manifest['counts'],
                    manifest=manifest)
    if data is None:
        raise RunnerError(f'{out} holds no study ({out / "data" / name} is missing): pass the --out of a study')
    settings = data['manifest']['settings']
    wanted = _font_settings(cfg, name)
    changed = [k for k, v in wanted.items() if settings.get(k) != (list(v) if isinstance(v, tuple) else v)]
    if changed:
        raise RunnerError(f'{out} holds a study made with other settings ({", ".join(changed)} of its {name} data): '
                          f'add or drop --quick to match it')
    return dict(data, **{s: sum(data['counts'][s].values()) for s in ('train', 'val')})


def _pretrain_spec(cfg, data, device):
    """The fine-tuning regime's backbone: one run on the pretraining classes; its best weights as a local file."""
    return RunSpec(name='pretrain-latin', preset=get_preset('baseline'), seed=0, epochs=cfg['pretrain']['epochs'],
                   data=str(data['root']), last_k=cfg['last_k'], extra=recipe(cfg, device), variant='baseline',
                   label='pretraining', role='pretrain')


def regime_plans(cfg, roots, backbone, device='cpu'):
    """{regime: (data name, specs)}: the three regimes' runs (scratch-short and -long share their ladder runs); a
    run's name starts with its data set's."""
    betas = {v: BETA for v in set(cfg['scratch']['variants']) | set(cfg['finetune']['variants'])}
    s, f = cfg['scratch'], cfg['finetune']
    common = dict(seeds=cfg['seeds'], last_k=cfg['last_k'], betas=betas)
    scratch = dict(common, extra=recipe(cfg, device))
    finetune = dict(common, extra=recipe(cfg, device) + ('--pretrained-path', str(backbone)))
    short = plan_frontier(roots['scratch'], s['epochs'], s['ladder'], s['variants'], **scratch)
    long = [spec for spec in plan_frontier(roots['scratch'], s['epochs'], s['long_ladder'], s['long_variants'],
                                           long_epochs=s['epochs'] * s['long_factor'], **scratch)
            if spec.role == 'ladder' or spec.epochs != s['epochs']]
    tuned = plan_frontier(roots['finetune'], f['epochs'], f['ladder'], f['variants'], **finetune)
    plans = {'scratch-short': ('scratch', short), 'scratch-long': ('scratch', long), 'finetune': ('finetune', tuned)}
    return {regime: (data, [replace(spec, name=f'{data}-{spec.name}') for spec in specs])
            for regime, (data, specs) in plans.items()}


def _union(plans):
    """Each run once: the regimes share runs."""
    return list({spec.name: spec for _, specs in plans.values() for spec in specs}.values())


# (variant, its composition control: the same batches without the intra term, the plain method of the ladder)
DECOMPOSITION = (
    ('synermix', 'mixup-supplemented', 'mixup'),
    ('synermix-intra', 'baseline-supplemented', 'baseline'),
    ('synermix-paired', 'mixup-paired', 'mixup'),
    ('synermix-paired-distinct', 'mixup-paired-distinct', 'mixup'),
    ('synermix-intra-aug-paired-distinct', 'baseline-paired-distinct', 'baseline'),
    ('synermix-intra', 'clean-view', None),
    ('synermix', 'clean-view-mixup', None),
)


def _by_seed(points, epochs, variant):
    return {p['seed']: p['top1'] for p in points if p['epochs'] == epochs and p['variant'] == variant}


def decomposition_table(points, epochs):
    """Markdown: what the batches alone buy (control - plain run, same epochs) and what the intra term adds on the
    same batches (variant - control), paired by seed: mean ± std [95% interval]; the clean-view rows: mixing - clean
    images."""
    lines = ['| variant | control | batches alone (control - plain, same epochs) | intra term on top (variant - '
             'control) |', '| --- | --- | --- | --- |']
    for variant, control, plain in DECOMPOSITION:
        v, c = _by_seed(points, epochs, variant), _by_seed(points, epochs, control)
        if not v or not c:
            continue
        alone = paired_difference(c, _by_seed(points, epochs, plain)).text() if plain else \
            '(same batches, same cost)'
        lines.append(f'| {variant} | {control} | {alone} | {paired_difference(v, c).text()} |')
    return '\n'.join(lines) + '\n'


def _section(regime, cfg, data, points, score, picture, missing):
    part = cfg['finetune' if regime == 'finetune' else 'scratch']
    epochs = part['epochs'] * (part.get('long_factor', 1) if regime == 'scratch-long' else 1)
    unfinished = (f'**Incomplete: {len(missing)} planned runs have not finished** ({", ".join(missing)}); the rows '
                  f'below hold the seeds that have, and a row with fewer than {len(cfg["seeds"])} seeds is not a '
                  f'result yet.\n\n') if missing else ''
    return (f'## {TITLES[regime]} (`{regime}`)\n\n' + unfinished +
            f'{data["num_classes"]} classes, {data["train"]} training images ({part["train_fonts"]} fonts per class), '
            f'validation on {data["val"]} images of unseen font families; variants trained {epochs} epochs; '
            f'seeds {", ".join(map(str, cfg["seeds"]))}; picture `{Path(picture).name}`.\n\n'
            + frontier_table(points, score) + '\nWhat the batch composition alone buys, and what the intra term '
            f'adds on the same batches, at {epochs} epochs (top-1 points, paired by seed: mean ± std [95% '
            f'interval]):\n\n' + decomposition_table(points, epochs))


def _points_of(plans, results):
    """{regime: (points, names of unfinished runs)} from the runs in `results`."""
    return {regime: ([point(results[s.name]) for s in planned if s.name in results],
                     [s.name for s in planned if s.name not in results]) for regime, (_, planned) in plans.items()}


def _recorded_points(out, plans):
    """{regime: (points, names of runs the record lacks)} from `OUT/study.json`, the record a finished study keeps
    of every run: what a clone of the repository holds, without the run folders."""
    record = json.loads((out / 'study.json').read_text())
    regimes = {}
    for regime, (_, planned) in plans.items():
        rows = {(r['role'], r['variant'], r['epochs'], r['seed']): r for r in record if r['regime'] == regime}
        points, missing = [], []
        for s in planned:
            r = rows.get((s.role, s.variant, s.epochs, s.seed))
            if r is None:
                missing.append(s.name)
                continue
            points.append(dict(name=s.name, label=s.label, role=s.role, variant=s.variant, method=r['method'],
                               intra=s.intra, epochs=s.epochs, seed=s.seed, beta=r['beta'], cost=r['cost'],
                               top1=r['top1'], best=r['best_top1'], seconds=r['train_seconds'], run_dir=r['run']))
        regimes[regime] = (points, missing)
    return regimes


def _write(out, out_arg, cfg, plans, regimes, datasets, made_by):
    """results.md, the frontier pictures and study.json from {regime: (points, unfinished run names)}; returns
    {regime: judge() rows}."""
    sections, everything, verdicts = [], [], {}
    for regime, (points, missing) in regimes.items():
        data = datasets[plans[regime][0]]
        score = Score(last_k=cfg['last_k'], val_images=data['val'], split='unseen font families')
        picture = plot_frontier(points, out / f'frontier_{regime}.png', TITLES[regime])
        sections.append(_section(regime, cfg, data, points, score, picture, missing))
        verdicts[regime] = judge(points, score)
        everything += [dict(regime=regime, method=p['method'], variant=p['variant'], role=p['role'],
                            epochs=p['epochs'], seed=p['seed'], beta=p['beta'], cost=p['cost'], top1=p['top1'],
                            best_top1=p['best'], train_seconds=p['seconds'], run=Path(p['run_dir']).name)
                       for p in points]
    header = (f'# The regime map\n\nMade by `python -m timm_synermix.experiments.study --out {out_arg}` '
              f'({made_by}). {cfg["model"]} at {cfg["size"]} px, -b {cfg["batch"]}, SGD lr {cfg["lr"]} '
              f'with cosine decay; top-1 is the mean of the last {cfg["last_k"]} epochs on unseen font families; '
              f'cost is images through forward+backward; β = {BETA} for every intra variant and control. '
              f'train.py arguments shared by every run: `{shlex.join(recipe(cfg))}`.\n\n')
    (out / 'results.md').write_text(header + '\n'.join(sections))
    (out / 'study.json').write_text(json.dumps(everything, indent=1))
    return verdicts


def run_study(out_dir, quick=False, seeds=None, workers=None, fonts_dirs=None, stream=None, report_only=False,
              device='cpu', train_script=None):
    """ Build the data, pretrain the fine-tuning backbone, train every regime's ladder and variants, write the map.
    With `report_only`, write the map from the runs that have finished, naming the ones that have not; it reads
    the data sets and runs (or, where the run folders are not there, the study's own record `study.json` and data
    manifests) and writes no data.

    Returns:
        dict(table: results.md path, verdicts: {regime: judge() rows}, wall_s)
    """
    start = time.perf_counter()
    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in dict(seeds=seeds, workers=workers).items() if v})
    out = Path(out_dir).resolve()
    recorded = report_only and not (out / 'runs').is_dir()
    if recorded and not (out / 'study.json').is_file():
        raise RunnerError(f'{out} holds no study runs: pass the --out of a study')
    command = f'python -m timm_synermix.experiments.study --out {out_dir}' + (' --quick' if quick else '')
    with Runner(out, command=command, workers=cfg['workers'], threads=1, stream=stream,
                train_script=train_script) as runner:
        if report_only:
            datasets = {name: _read(out, name, cfg) for name in DATA}
        else:
            datasets = {name: _build(out, name, cfg, fonts_dirs, runner) for name in DATA}
        pretrain = _pretrain_spec(cfg, datasets['pretrain'], device)
        backbone = out / 'runs' / pretrain.name / 'model_best.safetensors'
        plans = regime_plans(cfg, {name: data['root'] for name, data in datasets.items()}, backbone, device)
        if recorded:
            regimes = _recorded_points(out, plans)
            made_by = 'with --report-only, from the record study.json keeps of every finished run'
        elif report_only:
            regimes = _points_of(plans, runner.gather(_union(plans))[0])
            made_by = 'with --report-only: a report of the finished runs'
        else:
            runner.run([pretrain])
            runner.emit(f'study: {len(_union(plans))} runs over {len(plans)} regimes, {cfg["workers"]} at a time')
            regimes = _points_of(plans, runner.run(_union(plans)))
            made_by = f'{(time.perf_counter() - start) / 60:.0f} min'
        verdicts = _write(out, out_dir, cfg, plans, regimes, datasets, made_by)
    wall_s = time.perf_counter() - start
    return dict(table=str(out / 'results.md'), verdicts=verdicts, wall_s=wall_s)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.study', description=__doc__.split('\n\n')[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__[__doc__.index('Example'):],
        allow_abbrev=False)
    parser.add_argument('--out', default='results/study', help='output folder (default: results/study)')
    parser.add_argument('--quick', action='store_true', help='tiny model, data and epochs: a smoke run (a minute)')
    parser.add_argument('--seeds', nargs='+', type=int, default=None, help=f'seeds (default: {FULL["seeds"]})')
    parser.add_argument('--workers', type=int, default=None, help='runs at a time (default: 2)')
    parser.add_argument('--fonts', nargs='+', default=None, metavar='DIR',
                        help='font folders (default: the system\'s and matplotlib\'s)')
    parser.add_argument('--report-only', action='store_true',
                        help='train nothing and write no data: the tables and pictures from the finished runs')
    args = parser.parse_args(argv)
    try:
        result = run_study(args.out, quick=args.quick, seeds=args.seeds, workers=args.workers, fonts_dirs=args.fonts,
                           report_only=args.report_only)
    except RunnerError as e:
        print(f'study: error: {e}', file=sys.stderr)
        return e.code
    except ValueError as e:  # the data builders' one-line refusals (no fonts, a folder in the way)
        print(f'study: error: {e}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('study: interrupted; run the same command again to resume (finished runs are reused)', file=sys.stderr)
        return 130
    print(Path(result['table']).read_text())
    return 0


if __name__ == '__main__':
    sys.exit(main())
