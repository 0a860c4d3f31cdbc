"""Section `glyphs` of `make gpu-check`: the trainer on 64 px glyphs from matplotlib's fonts, baseline vs SynerMix.

Nothing is downloaded: the glyphs are rendered from the fonts matplotlib ships; top-1 on unseen font families and
the wall time of each run.
"""
import json
import os
import shlex
import time
from pathlib import Path

from .rows import Rows

GLYPH_BETA = 0.4   # timm_synermix.experiments.study.BETA: the beta the paper's holdout protocol chose on glyphs


def glyph_command(cfg, data_root: str, method: str, run_dir: Path) -> list:
    """train.py arguments: the study's recipe on the GPU; SynerMix with the study's beta."""
    from timm_synermix.experiments.study import Recipe
    g = cfg['glyph']
    args = list(Recipe(g['model'], g['size'], g['batch'], g['lr'], log_interval=100, device=cfg['device'],
                       workers=g['workers']).args())
    args += ['--method', method, '--epochs', str(g['epochs']), '--seed', '0', '--report-last-k', '3',
             '--no-feature-metrics',
             '--output', str(run_dir.parent), '--experiment', run_dir.name]
    args += ['--synermix-beta', str(GLYPH_BETA)] if method == 'synermix' else []
    args += ['--amp', '--amp-dtype', 'bfloat16', '--channels-last'] if g['amp'] else []
    args += ['--use-multi-epochs-loader'] if g['workers'] else []
    return [data_root, *args]


def bench_glyphs(report: Rows, cfg, work: Path):
    import matplotlib
    from timm_synermix.experiments.fonts import build_font_dataset
    from timm_synermix.trainer.main import main as train_main
    g = cfg['glyph']
    fonts = os.path.join(os.path.dirname(matplotlib.__file__), 'mpl-data', 'fonts', 'ttf')
    kwargs = dict(size=g['size'], val_families=2, train_fonts_per_class=g['train_fonts'],
                  val_fonts_per_class=g['val_fonts'], scripts=g['scripts'], min_train_fonts=3, min_val_fonts=1)
    data = build_font_dataset(work / 'glyphs', fonts_dirs=[fonts], **kwargs)
    counts = {s: sum(data['counts'][s].values()) for s in ('train', 'val')}
    built = (f'<glyphs> = build_font_dataset(fonts_dirs=[matplotlib mpl-data/fonts/ttf], '
             f'{", ".join(f"{k}={v!r}" for k, v in kwargs.items())}): {data["num_classes"]} classes, {counts["train"]} '
             f'train / {counts["val"]} val images, val font families {data["manifest"].get("val_groups")} (matplotlib '
             'ships DejaVu, STIX and Computer Modern only: fewer fonts per class than the study\'s Debian fonts)')
    report.note(built)
    results = {}
    for method in ('baseline', 'synermix'):
        argv = glyph_command(cfg, str(data['root']), method, work / 'runs' / method)
        cmd = shlex.join(['python', '-m', 'timm_synermix.trainer', '<glyphs>', *argv[1:]]).replace(str(work), '<tmp>')
        start = time.perf_counter()
        try:   # in this process: the wall time leaves out python's and timm's import (same for both runs)
            rc = train_main(argv)
        except SystemExit as e:
            rc = e.code
        wall = time.perf_counter() - start
        if rc != 0:
            report.note(f'glyphs.{method} failed (exit {rc}) after {wall:.0f} s (its log is above); cmd: {cmd}')
            continue
        res = json.loads((work / 'runs' / method / 'results.json').read_text())
        results[method] = res, wall
        report.value(f'glyphs.{method}.top1', 'top1', [res['last_k_mean_top1']],
                     f'top-1 (%) on unseen font families, mean of the last {res["last_k"]} epochs (best '
                     f'{res["best_top1"]:.2f} at epoch {res["best_epoch"]}); {g["epochs"]} epochs, '
                     f'{res["cost"]["image_passes"]} image passes, {res["cost"]["train_seconds"]:.1f} s training', cmd)
        report.value(f'glyphs.{method}.wall', 's', [wall], 'wall time of the trainer\'s main(argv) in this process '
                     '(set-up, data, training, evaluation, outputs; not python\'s imports)', cmd)
    if len(results) == 2:
        (b, bw), (s, sw) = results['baseline'], results['synermix']
        report.value('glyphs.synermix_minus_baseline.top1', 'points',
                     [s['last_k_mean_top1'] - b['last_k_mean_top1']], 'top-1 of SynerMix minus baseline, one seed')
        report.ratio('glyphs.synermix_vs_baseline.wall', [sw / bw], 'wall time of SynerMix / baseline run')
