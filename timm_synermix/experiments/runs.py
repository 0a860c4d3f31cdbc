"""Training runs as the experiments read them: loading run folders and the results.md table.

One place for what compare and report share: a run folder is what the trainer writes (args.yaml, summary.csv,
results.json, features.npz) plus the runner's record (`runner.RECORD`: its command, data and table row).
"""
import csv
import json
import math
import os

import numpy as np

from ..method.presets import PRESETS
from .runner import RECORD, beta_text
from .scores import fmt

__all__ = ['load_run', 'find_runs', 'top1', 'paper_name', 'group_runs', 'format_table']


def paper_name(method):
    return PRESETS[method].paper_name if method in PRESETS else ''


def _read_summary(path):
    """ timm's summary.csv as {column: float array}, one entry per epoch (last row wins on resume). """
    rows = {}
    with open(path, newline='') as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or 'epoch' not in header:
            raise ValueError(f'{path} has no header with an "epoch" column; is it timm\'s summary.csv?')
        for row in reader:
            if not row or row == header:  # a resumed run may append a second header
                continue
            record = dict(zip(header, row))
            try:
                epoch = int(float(record['epoch']))
            except ValueError:
                continue
            rows[epoch] = record
    columns = {'epoch': np.array(sorted(rows), dtype=np.int64)}
    for name in header:
        if name == 'epoch':
            continue
        values = []
        for epoch in columns['epoch']:
            try:
                values.append(float(rows[epoch].get(name, 'nan')))
            except ValueError:
                values.append(math.nan)
        columns[name] = np.array(values, dtype=np.float64)
    return columns


def load_run(run_dir, with_features=True):
    """ Read one run directory.

    Args:
        run_dir: directory with args.yaml and summary.csv; results.json and features.npz optional.
        with_features: read features.npz (the t-SNE needs it; tables do not).

    Returns:
        dict(name, path, method, beta, seed, model, experiment, args, summary {column: array},
        results (dict or None), features (array or None), labels (array or None), metrics (dict),
        intra (whether it trained the intra term, as args.yaml records), train_s (training seconds, results.json),
        label (the row the runner recorded for it, by default the method))
    """
    import yaml

    args_path = os.path.join(run_dir, 'args.yaml')
    if not os.path.isfile(args_path):
        raise ValueError(f'{run_dir} has no args.yaml; pass the output directory of a train.py run.')
    with open(args_path) as f:
        args = yaml.safe_load(f) or {}
    if not isinstance(args, dict):
        raise ValueError(f'{args_path} must be a mapping of argument names to values.')

    results = None
    results_path = os.path.join(run_dir, 'results.json')
    if os.path.isfile(results_path):
        with open(results_path) as f:
            results = json.load(f)
    method = args.get('method') or (results or {}).get('method')
    if not method:
        raise ValueError(f'{run_dir}: args.yaml has no "method"; the report groups runs by it.')

    summary_path = os.path.join(run_dir, 'summary.csv')
    summary = _read_summary(summary_path) if os.path.isfile(summary_path) else {}

    features = labels = None
    features_path = os.path.join(run_dir, 'features.npz')
    if with_features and os.path.isfile(features_path):
        with np.load(features_path) as data:
            features, labels = data['features'], data['labels']

    beta = args.get('synermix_beta')
    record_path = os.path.join(run_dir, RECORD)
    record = json.loads(open(record_path).read()) if os.path.isfile(record_path) else {}
    return dict(
        name=os.path.basename(os.path.normpath(run_dir)),
        path=run_dir,
        method=str(method),
        beta=None if beta is None else float(beta),
        seed=args.get('seed'),
        model=args.get('model'),
        experiment=args.get('experiment'),
        args=args,
        summary=summary,
        results=results,
        features=features,
        labels=labels,
        metrics=(results or {}).get('metrics') or {},
        intra=bool(args.get('synermix')) and float(beta or 0) > 0,
        train_s=((results or {}).get('cost') or {}).get('train_seconds'),
        label=record.get('label') or str(method),
    )


def find_runs(paths):
    """ Run directories among ``paths``: each path that holds args.yaml, else its subdirectories that do. """
    runs = []
    for path in paths:
        if os.path.isfile(os.path.join(path, 'args.yaml')):
            runs.append(path)
        elif os.path.isdir(path):
            runs.extend(
                os.path.join(path, d) for d in sorted(os.listdir(path))
                if os.path.isfile(os.path.join(path, d, 'args.yaml')))
    if not runs:
        raise ValueError(f'No run directory (one holding args.yaml) in or under {", ".join(map(str, paths))}.')
    return runs


def top1(run, k=5):
    """ (best top-1, mean top-1 of the last k epochs): from results.json, else from summary.csv. """
    results = run['results'] or {}
    curve = run['summary'].get('eval_top1', np.array([]))
    curve = curve[~np.isnan(curve)]
    best, last = results.get('best_top1'), results.get('last_k_mean_top1')
    if best is None:
        best = curve.max() if curve.size else math.nan
    if last is None:
        last = curve[-k:].mean() if curve.size else math.nan
    return float(best), float(last)


def group_runs(runs):
    """ {label: runs}: runs of one method (and model, and beta where several are compared) pooled over seeds. """
    order = {m: i for i, m in enumerate(PRESETS)}
    several_models = len({r['model'] for r in runs}) > 1
    betas = {}
    for r in runs:
        betas.setdefault(r['label'], set()).add(r['beta'])

    def label(r):
        text = r['label']
        if several_models:
            text = f'{r["model"]} {text}'
        if r['intra'] and len(betas[r['label']]) > 1:
            text = f'{text} β={r["beta"]:g}' if r['beta'] is not None else f'{text} β=?'
        return text

    def key(r):
        seed = r['seed'] if isinstance(r['seed'], int) else -1
        return (str(r['model']), order.get(r['method'], len(order)), r['label'], r['beta'] or 0., seed)

    groups = {}
    for r in sorted(runs, key=key):
        groups.setdefault(label(r), []).append(r)
    return groups


def format_table(finals, sweep=None, chosen=None, note='', holdout=0.1):
    """ Markdown: one row per (method, beta) over seeds; then the beta sweep when there is one.

    Args:
        finals: runs (``load_run``) of the final runs, in table order.
        sweep: runs of the β sweep (holdout), or None.
        chosen: {method: chosen beta}.
        note: a line put under the title (data and settings).
    """
    chosen = chosen or {}
    groups = {}
    for r in finals:
        beta = r['beta'] if r['intra'] else None
        groups.setdefault((r['label'], beta), []).append(r)
    ks = sorted({r['results'].get('last_k') for r in finals} - {None})
    k = str(ks[0]) if len(ks) == 1 else 'k'
    single = all(len(rs) == 1 for rs in groups.values())
    lines = ['## Results', '']
    if note:
        lines += [note, '']
    lines += [
        f'| method | paper name | β | seeds | best top-1 | last-{k} top-1 | intra distance | cohesion | fisher ratio '
        f'| silhouette | training time / run |',
        '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ]
    for (label, beta), runs in groups.items():
        method = runs[0]['method']
        if beta is None:
            beta_cell = '–'
        else:
            beta_cell = beta_text(beta) + (' (sweep)' if method in chosen else '')
        if len(runs) == 1:  # one seed: the spread is over the last k epochs of that run
            res = runs[0]['results']
            mean, std = res.get('last_k_mean_top1'), res.get('last_k_std_top1')
            last = '–' if mean is None else f'{mean:.2f}' + ('' if std is None else f' ± {std:.2f}')
        else:
            last = fmt([r['results'].get('last_k_mean_top1') for r in runs])
        metric = lambda key: fmt([r['metrics'].get(key) for r in runs], 3)  # noqa: E731
        lines.append('| ' + ' | '.join([
            label, paper_name(method), beta_cell, ', '.join(str(r['seed']) for r in runs),
            fmt([r['results'].get('best_top1') for r in runs]), last,
            metric('intra_distance'), metric('cohesion'), metric('fisher_ratio'), metric('silhouette'),
            fmt([r['train_s'] for r in runs], 0, ' s'),
        ]) + ' |')
    lines += ['']
    spread = f'mean ± std of the top-1 of the last {k} epochs of the one run' if single else \
        f'per run the mean top-1 of its last {k} epochs, then mean ± sample std over seeds'
    if not single and any(len(rs) == 1 for rs in groups.values()):
        spread += f' (rows with one seed: mean ± std over its last {k} epochs)'
    lines += [f'Top-1 in % on the eval split; best top-1 and metrics: mean ± sample std over seeds; last-{k}: '
              f'{spread}. Intra distance: mean distance to the class centroid / global spread (lower is tighter); '
              f'cohesion = 1 − intra distance; fisher ratio = between / within-class scatter; metrics on the '
              f'eval-set features (pre-logits) of the last epoch\'s model.']
    if sweep:
        lines += ['', '## β sweep', '',
                  f'Stratified {holdout:.0%} holdout of the training set (train.py --val-holdout {holdout:g}), '
                  f'seed {sweep[0]["seed"]}; chosen: best holdout last-{k} top-1, ties to the smaller β.', '',
                  f'| method | β | holdout best top-1 | holdout last-{k} top-1 | chosen |',
                  '| --- | --- | --- | --- | --- |']
        for r in sweep:
            res = r['results']
            best, last = res.get('best_top1'), res.get('last_k_mean_top1')
            lines.append(f'| {r["method"]} | {beta_text(r["beta"])} | '
                         f'{"–" if best is None else f"{best:.2f}"} | {"–" if last is None else f"{last:.2f}"} | '
                         f'{"✓" if chosen.get(r["method"]) == r["beta"] else ""} |')
    return '\n'.join(lines) + '\n'
