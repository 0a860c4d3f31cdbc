""" When does SynerMix pay? The regime map: every variant against the plain-training frontier, per regime.

A study is a set of data sets, pretraining runs and regimes (`Study`). In each regime baseline and MixUp train on a
ladder of budgets; the frontier is the best top-1 they reach for a given cost (images through forward+backward,
``frontier.py``), and every SynerMix variant and control is judged by its distance above or below it at its own
cost, per seed, with its 95% interval. The studies (``STUDIES``):

* ``glyphs`` (``make study``): glyphs rendered from real font files (``fonts.py``), validated on font families never
  seen in training; ``resnet10t`` at 24 px. ``scratch-short`` (from scratch, the base epochs; the ladder 1x, 2x, 4x),
  ``scratch-long`` (the variants at 3x the base epochs, the ladder extended to 8x and 11x so that it reaches the cost
  of SynerMix-Intra's 3.6x passes) and ``finetune`` (a backbone pretrained on the digits and Latin letters,
  fine-tuned on the Greek and Cyrillic letters that are no homoglyph of a Latin one, with few fonts per class).
* ``icons`` (``make study-icons``): icons of the freedesktop names as drawn by Debian's icon themes (``icons.py``),
  validated on held-out theme families; ``resnet10t`` at 32 px, fine-tuned from a backbone pretrained on Latin glyphs
  (a domain shift) and from scratch.
* ``families`` (``make study-families``): the design card's three families (``resnet10t``, ``mobilenetv3_small_100``,
  Swin-T) on the glyph fine-tuning regime, each at a size it learns at on a CPU, each from its own glyph backbone.
* ``gpu`` (``make study-gpu``): the three families fine-tuned on icons at 64 px on one CUDA GPU, one seed; its plan
  and time estimate are checked on any machine with ``--dry-run``.
* ``quick`` (``make study-quick``): the same pipeline on tiny settings, a smoke run.

The variants: the paper's SynerMix and SynerMix-Intra on supplemented batches; paired batches (several pairs of
a class per batch, and B/2 distinct classes); the intra term from the augmented view (1.0x); the intra term every
4th step with plain batches between; the clean-view controls (β·CE(originals), docs/method.md §6); and the batch
compositions alone (plain training and MixUp on supplemented and paired batches, repeated augmentation).

β is not tuned here: every intra variant and control uses β = 0.4 (``docs/study.md``). Runs go through the
experiments' runner, two at a time, one torch thread each; an interrupted study resumes.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

from ..method.presets import get_preset
from .frontier import frontier_table, judge, plan_frontier, plot_frontier, point
from .runner import Runner, RunnerError, RunSpec
from .scores import Score, paired_difference

__all__ = ['Recipe', 'DataSet', 'Pretraining', 'Regime', 'Study', 'STUDIES', 'BETA', 'DECOMPOSITION',
           'regime_plans', 'close_variants', 'five_seed_rule', 'five_seed_plans', 'decomposition_table', 'run_study',
           'main']

BETA = 0.4


@dataclass(frozen=True)
class Recipe:
    """train.py's arguments shared by a study's runs of one model: cosine decay, crop-only augmentation (no flips:
    a mirrored glyph is another character, a mirrored icon another drawing), no label smoothing."""
    model: str
    size: int
    batch: int
    lr: float
    opt: str = 'sgd'
    weight_decay: str = '5e-4'
    warmup_epochs: int = 0
    log_interval: int = 50
    device: str = 'cpu'
    workers: int = 0
    extra: Tuple[str, ...] = ()

    def args(self) -> Tuple[str, ...]:
        momentum = ('--momentum', '0.9') if self.opt == 'sgd' else ()
        return ('--model', self.model, '--img-size', str(self.size), '--device', self.device, '-j', str(self.workers),
                '-b', str(self.batch), '--opt', self.opt, '--lr', str(self.lr), *momentum,
                '--weight-decay', self.weight_decay,
                '--sched', 'cosine', '--warmup-epochs', str(self.warmup_epochs), '--smoothing', '0',
                '--scale', '0.6', '1', '--ratio', '0.8', '1.25', '--hflip', '0', '--color-jitter', '0',
                '--mixup-mode', 'elem', '--checkpoint-hist', '1', '--log-interval', str(self.log_interval),
                '--val-split', 'val', *self.extra)


@dataclass(frozen=True)
class DataSet:
    """A data set of a study: its builder (`BUILDERS`: 'fonts' or 'icons') and the builder's arguments; `expected`
    is (training images, classes) as built from Debian bookworm's packages, for the plan's estimate before a build."""
    kind: str
    settings: Mapping
    expected: Tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Pretraining:
    """A backbone trained once (baseline, seed 0) for the fine-tuning regimes: its best weights, a local file."""
    name: str
    data: str
    epochs: int
    recipe: Recipe


@dataclass(frozen=True)
class Regime:
    """One map of the study: the plain ladder and the variants on one data set and recipe.

    Args:
        long_factor: The variants train `epochs × long_factor` epochs (the ladder's rungs stay multiples of
            `epochs`, so regimes on one data set and recipe share them).
        backbone: The `Pretraining` the runs start from (None: from scratch).
    """
    name: str
    title: str
    data: str
    recipe: Recipe
    epochs: int
    ladder: Tuple[float, ...]
    variants: Tuple[str, ...]
    long_factor: int = 1
    backbone: Optional[str] = None


@dataclass(frozen=True)
class Study:
    """Data sets, backbones and regimes, trained over `seeds`.

    Args:
        more_seeds: The five-seed rule: once `seeds` have finished, these seeds train each regime's ladder again and
            every variant whose distance to the frontier is within 2 std of zero (`close_variants`), the rows the
            base seeds cannot tell apart.
    """
    name: str
    data: Dict[str, DataSet]
    pretraining: Tuple[Pretraining, ...]
    regimes: Tuple[Regime, ...]
    seeds: Tuple[int, ...] = (0, 1, 2)
    more_seeds: Tuple[int, ...] = ()
    last_k: int = 3
    workers: int = 2

    @property
    def has_five_seed_rule(self) -> bool:
        """Whether the rule applies: it adds seeds and has at least two base seeds to measure a std on."""
        return bool(self.more_seeds) and len(self.seeds) > 1


# Every variant and control (frontier.VARIANTS) in the short regimes; the long schedule takes the subset the
# 3-hour budget allows (docs/study.md: what was traded).
ALL = ('synermix', 'synermix-intra', 'clean-view', 'clean-view-mixup', 'baseline-supplemented',
       'mixup-supplemented', 'synermix-paired', 'baseline-paired', 'mixup-paired', 'synermix-paired-distinct',
       'baseline-paired-distinct', 'mixup-paired-distinct', 'synermix-intra-aug-paired-distinct',
       'synermix-intra-every4', 'baseline-repeats2')
LONG = ('synermix-intra', 'clean-view', 'baseline-supplemented', 'synermix-intra-aug-paired-distinct',
        'baseline-paired-distinct')
SCRIPTS = ('latin', 'greek', 'cyrillic')


# The icon regimes: the paper's forms, the clean-view controls and the batch compositions (frontier.VARIANTS).
ICON_VARIANTS = ('synermix', 'synermix-intra', 'clean-view', 'clean-view-mixup', 'baseline-supplemented',
                 'mixup-supplemented', 'synermix-paired-distinct', 'baseline-paired-distinct', 'mixup-paired-distinct')


# The model families' regimes: the paper's forms, the clean-view control and the supplemented-batch controls.
FAMILY_VARIANTS = ('synermix', 'synermix-intra', 'clean-view', 'baseline-supplemented', 'mixup-supplemented',
                   'synermix-paired-distinct')


def _fonts(train, val, scripts, expected=(0, 0)):
    return DataSet('fonts', dict(train_fonts_per_class=train, val_fonts_per_class=val, min_train_fonts=train,
                                 scripts=scripts), expected)


_GLYPH = Recipe('resnet10t', 24, 32, 0.05)
_ICON = Recipe('resnet10t', 32, 32, 0.05)
_ICONS = DataSet('icons', {}, expected=(3747, 245))
_LATIN = _fonts(20, 4, ('latin',), expected=(1240, 62))
# The design card's three families at sizes each learns at on this CPU (docs/icons.md, "model sizes"): MobileNetV3
# does not learn at 32 px; Swin-T (the smallest registered timm Swin) trains at 32 px with a 4x4 window, and only
# with AdamW and a warm-up (SGD at the recipe's lr stays at chance).
_SWIN_ARGS = ('--model-kwargs', 'img_size={size}', 'window_size=4', '--warmup-lr', '1e-5')


def _families(size_cnn, size_mobile, size_swin, device='cpu', workers=0, extra=()):
    swin = tuple(a.format(size=size_swin) for a in _SWIN_ARGS)
    common = dict(device=device, workers=workers)
    return (Recipe('resnet10t', size_cnn, 32, 0.05, extra=extra, **common),
            Recipe('mobilenetv3_small_100', size_mobile, 32, 0.05, extra=extra, **common),
            Recipe('swin_tiny_patch4_window7_224', size_swin, 32, 3e-4, opt='adamw', weight_decay='0.05',
                   warmup_epochs=1, extra=swin + extra, **common))


def _family_regimes(recipes, data, epochs, ladder, variants, title):
    return tuple(Regime(f'{data}-{r.model.split("_")[0]}', f'{title}: {r.model} at {r.size} px', data, r, epochs,
                        ladder, variants, backbone=f'latin-{r.model}') for r in recipes)


_CPU_FAMILIES = _families(32, 48, 32)
# On one GPU, 64 px (the two CNNs) and 64 px Swin-T; bfloat16 autocast and channels-last as the GPU check runs.
_GPU_FAMILIES = _families(64, 64, 64, device='cuda', workers=4, extra=('--amp', '--amp-dtype', 'bfloat16',
                                                                         '--channels-last'))
_TINY = Recipe('test_resnet', 16, 16, 0.05, log_interval=10)
# A smoke run of the same pipeline. matplotlib's fonts draw Greek and Cyrillic in one design family only, too few
# to hold one out, so the quick fine-tuning regime reuses the Latin classes.
STUDIES = {study.name: study for study in (
    Study('glyphs', data=dict(scratch=_fonts(6, 4, SCRIPTS), pretrain=_fonts(20, 4, ('latin',)),
                              finetune=_fonts(6, 4, ('greek', 'cyrillic'))),
          pretraining=(Pretraining('latin', 'pretrain', 12, _GLYPH),),
          regimes=(Regime('scratch-short', 'From scratch, short schedule', 'scratch', _GLYPH, 6, (1, 2, 4), ALL),
                   Regime('scratch-long', 'From scratch, long schedule (3x epochs)', 'scratch', _GLYPH, 6,
                          (1, 2, 4, 8, 11), LONG, long_factor=3),
                   Regime('finetune', 'Fine-tuning a pretrained backbone on new classes', 'finetune', _GLYPH, 8,
                          (1, 2, 4), ALL, backbone='latin'))),
    # Icons in colour drawn by independent designers (icons.py), validated on held-out theme families: fine-tuning a
    # backbone pretrained on Latin glyphs (a domain shift) and from scratch.
    Study('icons', data=dict(glyphs=_LATIN, icons=_ICONS),
          pretraining=(Pretraining('latin', 'glyphs', 12, _ICON),),
          regimes=(Regime('icons-finetune', 'Icons: fine-tuning a backbone pretrained on glyphs', 'icons', _ICON, 8,
                          (1, 2, 4), ICON_VARIANTS, backbone='latin'),
                   Regime('icons-scratch', 'Icons from scratch', 'icons', _ICON, 8, (1, 2, 4), ICON_VARIANTS)),
          more_seeds=(3, 4)),
    # The design card's three families (ResNet, MobileNetV3, Swin-T) on the glyph fine-tuning regime.
    Study('families', data=dict(pretrain=_LATIN, finetune=_fonts(6, 4, ('greek', 'cyrillic'), expected=(372, 62))),
          pretraining=tuple(Pretraining(f'latin-{r.model}', 'pretrain', 12, r) for r in _CPU_FAMILIES),
          regimes=_family_regimes(_CPU_FAMILIES, 'finetune', 8, (1, 2, 4), FAMILY_VARIANTS,
                                  'Glyph fine-tuning')),
    # A part of the map for one GPU (make study-gpu; its plan is checked on CPU by --dry-run): the three families
    # fine-tuned on icons from glyph backbones at 64 px, one seed, four runs at a time on the one device.
    Study('gpu', data=dict(pretrain=_LATIN, icons=_ICONS),
          pretraining=tuple(Pretraining(f'latin-{r.model}', 'pretrain', 12, r) for r in _GPU_FAMILIES),
          regimes=_family_regimes(_GPU_FAMILIES, 'icons', 5, (1, 2, 4), ('synermix', 'synermix-intra', 'clean-view'),
                                  'Icon fine-tuning on a GPU'),
          seeds=(0,), workers=4),
    Study('quick', data=dict(scratch=_fonts(3, 2, ('latin',)), pretrain=_fonts(3, 2, ('latin',)),
                             finetune=_fonts(3, 2, ('latin',))),
          pretraining=(Pretraining('latin', 'pretrain', 1, _TINY),),
          regimes=(Regime('scratch-short', 'From scratch, short schedule', 'scratch', _TINY, 1, (1, 2),
                          ('synermix-intra', 'clean-view', 'baseline-paired-distinct')),
                   Regime('scratch-long', 'From scratch, long schedule (2x epochs)', 'scratch', _TINY, 1, (1, 2),
                          ('synermix-intra',), long_factor=2),
                   Regime('finetune', 'Fine-tuning a pretrained backbone on new classes', 'finetune', _TINY, 1,
                          (1, 2), ('synermix', 'mixup-supplemented'), backbone='latin')),
          seeds=(0,), last_k=1),
)}


def _manifest_copy(out, name, root):
    # The manifest names every source file; those shipped inside Python packages lose this machine's prefix.
    manifest = (Path(root) / 'manifest.json').read_text()
    (out / f'data_manifest_{name}.json').write_text(re.sub(r'"[^"]*/site-packages/', '"<site-packages>/', manifest))


# Per data kind: (module, its builder, its reader, the builder's argument for the folders it reads).
BUILDERS = {'fonts': ('fonts', 'build_font_dataset', 'read_font_dataset', 'fonts_dirs'),
            'icons': ('icons', 'build_icon_dataset', 'read_icon_dataset', 'roots')}


def _builder(kind, which):
    import importlib
    module, build, read, _ = BUILDERS[kind]
    return getattr(importlib.import_module(f'{__package__}.{module}'), build if which == 'build' else read)


def _build(out, name, dataset, size, sources, runner):
    from .fonts import dropped_note
    found = sources.get(dataset.kind)
    kwargs = {BUILDERS[dataset.kind][3]: found} if found else {}
    data = _builder(dataset.kind, 'build')(out / 'data' / name, size=size, **kwargs, **dataset.settings)
    counts = {s: sum(data['counts'][s].values()) for s in ('train', 'val')}
    runner.emit(f'study: data {name}: {data["num_classes"]} classes, {counts["train"]} train / {counts["val"]} val '
                f'images ({"reused" if data["reused"] else "written"})')
    if dataset.kind == 'fonts' and dropped_note(data['manifest']):
        runner.emit(f'study: data {name}: {dropped_note(data["manifest"])}')
    _manifest_copy(out, name, data['root'])
    return dict(data, **counts)


def _read(out, name, dataset, size):
    """The data set a finished study used, read without writing (for --report-only)."""
    data = _builder(dataset.kind, 'read')(out / 'data' / name)
    copy = out / f'data_manifest_{name}.json'
    if data is None and copy.is_file():  # a clone holds the manifest's copy, not the data
        manifest = json.loads(copy.read_text())
        data = dict(root=str(out / 'data' / name), num_classes=len(manifest['classes']), counts=manifest['counts'],
                    manifest=manifest)
    if data is None:
        raise RunnerError(f'{out} holds no study ({out / "data" / name} is missing): pass the --out of a study')
    settings = data['manifest']['settings']
    wanted = dict(dataset.settings, size=size)
    changed = [k for k, v in wanted.items() if settings.get(k) != (list(v) if isinstance(v, tuple) else v)]
    if changed:
        raise RunnerError(f'{out} holds a study made with other settings ({", ".join(changed)} of its {name} data): '
                          f'pass the --study (or --quick) it was made with')
    return dict(data, **{s: sum(data['counts'][s].values()) for s in ('train', 'val')})


def _data_size(study, name):
    """The image size a data set is drawn at: its regimes' (and pretraining's) recipe size."""
    sizes = {r.recipe.size for r in study.regimes if r.data == name} | \
        {p.recipe.size for p in study.pretraining if p.data == name}
    return max(sizes)


def _pretrain_spec(study, pretraining, roots):
    return RunSpec(name=f'pretrain-{pretraining.name}', preset=get_preset('baseline'), seed=0,
                   epochs=pretraining.epochs, data=str(roots[pretraining.data]), last_k=study.last_k,
                   extra=pretraining.recipe.args(), variant='baseline', label='pretraining', role='pretrain')


def _backbone(out, name):
    return out / 'runs' / f'pretrain-{name}' / 'model_best.safetensors'


def regime_plans(study, roots, out):
    """{regime: specs}: every regime's runs, named after their data set, model and backbone (regimes on one data set,
    recipe and backbone share their ladder runs)."""
    betas = {v: BETA for r in study.regimes for v in r.variants}
    plans = {}
    for r in study.regimes:
        extra = r.recipe.args() + (('--pretrained-path', str(_backbone(out, r.backbone))) if r.backbone else ())
        specs = plan_frontier(roots[r.data], r.epochs, r.ladder, r.variants, study.seeds, extra=extra,
                              last_k=study.last_k, betas=betas,
                              long_epochs=r.epochs * r.long_factor if r.long_factor > 1 else None)
        if r.long_factor > 1:
            specs = [s for s in specs if s.role == 'ladder' or s.epochs != r.epochs]
        prefix = f'{r.data}-{r.recipe.model}' + (f'-from-{r.backbone}' if r.backbone else '')
        plans[r.name] = [replace(s, name=f'{prefix}-{s.name}') for s in specs]
    return plans


def close_variants(points, seeds):
    """The variants whose distance to the frontier over all of `seeds` is within 2 std of zero: the rows the
    five-seed rule trains on more seeds. Only the base seeds decide, so the added seeds cannot change who gets them."""
    rows = judge([p for p in points if p['seed'] in seeds])
    return tuple(dict.fromkeys(r['variant'] for r in rows if r['distance'] is not None and
                               r['distance'].n == len(seeds) and abs(r['distance'].mean) < 2 * r['distance'].std))


def five_seed_rule(study, regimes):
    """{regime: its close variants, or None while its base runs have not all finished} (`regimes`: {regime: (points,
    unfinished run names)} of the base seeds); {} where the rule does not apply (`Study.has_five_seed_rule`)."""
    if not study.has_five_seed_rule:
        return {}
    return {name: None if missing else close_variants(points, study.seeds) for name, (points, missing) in
            regimes.items()}


def five_seed_plans(study, roots, out, close):
    """{regime: specs} the five-seed rule adds: `study.more_seeds` for the ladder and the close variants
    (`five_seed_rule`) of each regime that has some."""
    chosen = tuple(replace(r, variants=close[r.name]) for r in study.regimes if close.get(r.name))
    return regime_plans(replace(study, seeds=study.more_seeds, regimes=chosen), roots, out) if chosen else {}


def _union(plans):
    """Each run once: the regimes share runs (a name two different runs share is a study's mistake)."""
    runs = {}
    for spec in (spec for specs in plans.values() for spec in specs):
        if runs.setdefault(spec.name, spec) != spec:
            raise RunnerError(f'two different runs of the study are named {spec.name}: give their regimes other data, '
                              f'models or backbones')
    return list(runs.values())


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


def _describe(dataset, data):
    manifest = data['manifest']
    if dataset.kind == 'icons':
        held_out = [f['name'] for f in manifest['families'] if f['split'] == 'val']
        trained = sum(f['split'] == 'train' for f in manifest['families'])
        return (f'{data["num_classes"]} icon names, {data["train"]} training images (one per theme, {trained} theme '
                f'families), validation on {data["val"]} images of the held-out families {", ".join(held_out)}')
    return (f'{data["num_classes"]} classes, {data["train"]} training images '
            f'({manifest["settings"]["train_fonts_per_class"]} fonts per class), validation on {data["val"]} images '
            f'of unseen font families')


def _five_seed_note(study, close):
    if not study.has_five_seed_rule:
        return ''
    base, more = ', '.join(map(str, study.seeds)), ', '.join(map(str, study.more_seeds))
    rule = f'Five-seed rule: a variant within 2 std of the frontier after seeds {base} trains seeds {more} too'
    if close is None:
        return f'{rule}; it is decided once seeds {base} have finished.\n\n'
    if not close:
        return f'{rule}; no variant is.\n\n'
    return f'{rule}, with the ladder: {", ".join(close)}.\n\n'


def _section(study, regime, dataset, data, points, score, picture, missing, close):
    epochs = regime.epochs * regime.long_factor
    unfinished = (f'**Incomplete: {len(missing)} planned runs have not finished** ({", ".join(missing)}); the rows '
                  f'below hold the seeds that have, and a row with fewer than {len(study.seeds)} seeds is not a '
                  f'result yet.\n\n') if missing else ''
    start = f'from the backbone `pretrain-{regime.backbone}`' if regime.backbone else 'from scratch'
    return (f'## {regime.title} (`{regime.name}`)\n\n' + unfinished +
            f'{_describe(dataset, data)}; {regime.recipe.model} at {regime.recipe.size} px, {start}; variants '
            f'trained {epochs} epochs; seeds {", ".join(map(str, study.seeds))}; picture `{Path(picture).name}`.\n\n'
            + _five_seed_note(study, close) + frontier_table(points, score) + '\nWhat the batch composition alone '
            f'buys, and what the intra term adds on the same batches, at {epochs} epochs (top-1 points, paired by '
            f'seed: mean ± std [95% interval]):\n\n' + decomposition_table(points, epochs))


def _points_of(plans, results):
    """{regime: (points, names of unfinished runs)} from the runs in `results`."""
    return {regime: ([point(results[s.name]) for s in planned if s.name in results],
                     [s.name for s in planned if s.name not in results]) for regime, planned in plans.items()}


def _recorded_points(out, plans):
    """{regime: (points, names of runs the record lacks)} from `OUT/study.json`, the record a finished study keeps
    of every run: what a clone of the repository holds, without the run folders."""
    record = json.loads((out / 'study.json').read_text())
    regimes = {}
    for regime, planned in plans.items():
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


def _write(out, command, study, regimes, datasets, made_by, close):
    """results.md, the frontier pictures and study.json from {regime: (points, unfinished run names)} and the
    five-seed rule's {regime: close variants}; returns {regime: judge() rows}."""
    sections, everything, verdicts = [], [], {}
    for regime in study.regimes:
        points, missing = regimes[regime.name]
        data = datasets[regime.data]
        score = Score(last_k=study.last_k, val_images=data['val'], split='held-out designs')
        picture = plot_frontier(points, out / f'frontier_{regime.name}.png', regime.title)
        sections.append(_section(study, regime, study.data[regime.data], data, points, score, picture, missing,
                                 close.get(regime.name)))
        verdicts[regime.name] = judge(points, score)
        everything += [dict(regime=regime.name, method=p['method'], variant=p['variant'], role=p['role'],
                            epochs=p['epochs'], seed=p['seed'], beta=p['beta'], cost=p['cost'], top1=p['top1'],
                            best_top1=p['best'], train_seconds=p['seconds'], run=Path(p['run_dir']).name)
                       for p in points]
    recipes = {r.recipe.args(): r.recipe for r in study.regimes}
    shared = f'`{shlex.join(next(iter(recipes)))}`' if len(recipes) == 1 else \
        'per regime, `' + '`; `'.join(shlex.join(args) for args in recipes) + '`'
    header = (f'# The regime map: `{study.name}`\n\nMade by `{command}` ({made_by}). Top-1 is the mean of the last '
              f'{study.last_k} epochs on held-out designs; cost is images through forward+backward; β = {BETA} for '
              f'every intra variant and control. train.py arguments shared by every run: {shared}.\n\n')
    (out / 'results.md').write_text(header + '\n'.join(sections))
    (out / 'study.json').write_text(json.dumps(everything, indent=1))
    return verdicts


def _datasets(out, study, report_only, sources, runner):
    sources = sources or {}
    if report_only:
        return {name: _read(out, name, ds, _data_size(study, name)) for name, ds in study.data.items()}
    return {name: _build(out, name, ds, _data_size(study, name), sources, runner) for name, ds in study.data.items()}


def run_study(out_dir, study='glyphs', seeds=None, workers=None, sources=None, stream=None, report_only=False,
              train_script=None):
    """ Build the data, pretrain the fine-tuning backbones, train every regime's ladder and variants, write the map.
    With `report_only`, write the map from the runs that have finished, naming the ones that have not; it reads
    the data sets and runs (or, where the run folders are not there, the study's own record `study.json` and data
    manifests) and writes no data.

    Args:
        study: A name in `STUDIES`, or a `Study`.
        sources: {data kind: folders its builder reads} (`BUILDERS`; default: the system's fonts and icons).

    Returns:
        dict(table: results.md path, verdicts: {regime: judge() rows}, wall_s)
    """
    start = time.perf_counter()
    study = STUDIES[study] if isinstance(study, str) else study
    study = replace(study, **{k: v for k, v in dict(seeds=tuple(seeds or ()), workers=workers).items() if v})
    study = replace(study, more_seeds=tuple(s for s in study.more_seeds if s not in study.seeds))
    out = Path(out_dir).resolve()
    recorded = report_only and not (out / 'runs').is_dir()
    if recorded and not (out / 'study.json').is_file():
        raise RunnerError(f'{out} holds no study runs: pass the --out of a study')
    command = f'python -m timm_synermix.experiments.study --study {study.name} --out {out_dir}'
    with Runner(out, command=command, workers=study.workers, threads=1, stream=stream,
                train_script=train_script) as runner:
        datasets = _datasets(out, study, report_only, sources, runner)
        roots = {name: data['root'] for name, data in datasets.items()}
        plans = regime_plans(study, roots, out)
        if not report_only:
            runner.run([_pretrain_spec(study, p, roots) for p in study.pretraining])
        regimes = _collect(runner, out, plans, recorded, report_only)
        close = five_seed_rule(study, regimes)
        more = five_seed_plans(study, roots, out, close)
        if more:  # only the added runs: the base runs were gathered above
            added = _collect(runner, out, more, recorded, report_only)
            regimes = {name: (points + added[name][0], missing + added[name][1]) if name in added else
                       (points, missing) for name, (points, missing) in regimes.items()}
        made_by = ('with --report-only, from the record study.json keeps of every finished run' if recorded else
                   'with --report-only: a report of the finished runs' if report_only else
                   f'{(time.perf_counter() - start) / 60:.0f} min')
        verdicts = _write(out, command, study, regimes, datasets, made_by, close)
    return dict(table=str(out / 'results.md'), verdicts=verdicts, wall_s=time.perf_counter() - start)


def _collect(runner, out, plans, recorded, report_only):
    """{regime: (points, unfinished run names)}: from the record (`recorded`), the finished runs (`report_only`), or
    by training what has not finished."""
    if recorded:
        return _recorded_points(out, plans)
    if report_only:
        return _points_of(plans, runner.gather(_union(plans))[0])
    runner.emit(f'study: {len(_union(plans))} runs over {len(plans)} regimes, {runner.workers} at a time')
    return _points_of(plans, runner.run(_union(plans)))


# The GPU plan's estimate, from bench/results_gpu.txt (an H200): resnet18 at 64 px trained 2,960 images/s plain and
# 1,970 with SynerMix (originals counted), and each run spent about 12 s outside training (start-up, evaluation).
GPU_IMAGES_PER_S = 2000
GPU_RUN_OVERHEAD_S = 15


def dry_run(study, out, stream=None):
    """Check a study's plan without data, training or writing: every command through train.py's checks (on a
    machine without the plan's device, as if on the CPU), names unique; print the commands and, for a CUDA plan, the
    time estimate. Returns the estimated seconds one run at a time (0 for a CPU plan)."""
    stream = stream or sys.stdout
    study = STUDIES[study] if isinstance(study, str) else study
    out = Path(out).resolve()
    roots = {name: str(out / 'data' / name) for name in study.data}
    specs = [_pretrain_spec(study, p, roots) for p in study.pretraining] + _union(regime_plans(study, roots, out))
    runner = Runner(out, stream=stream)
    passes = 0.0
    for spec in specs:
        args = runner.check_command(replace(spec, extra=tuple('cpu' if a == 'cuda' else a for a in spec.extra)))
        images, classes = study.data[next(k for k, v in roots.items() if v == spec.data)].expected
        passes += spec.estimated_passes(args, images, classes)
        print(f'{spec.role:8s} {shlex.join(runner.command_of(spec))}', file=stream)
    gpu = any('cuda' in spec.extra for spec in specs)
    serial = passes / GPU_IMAGES_PER_S + GPU_RUN_OVERHEAD_S * len(specs) if gpu else 0.0
    print(f'# {len(specs)} runs, {passes / 1e6:.2f} M image passes' + (
        f'; on one GPU at about {GPU_IMAGES_PER_S} images/s and {GPU_RUN_OVERHEAD_S} s per run outside training: '
        f'{serial / 60:.1f} min one run at a time, {serial / 60 / study.workers:.1f} min at {study.workers} at a time '
        f'if the GPU keeps up (small batches leave it launch-bound)' if gpu else ''), file=stream)
    if study.has_five_seed_rule:
        most = len(_union(five_seed_plans(study, roots, out, {r.name: r.variants for r in study.regimes})))
        print(f'# then the five-seed rule: seeds {" ".join(map(str, study.more_seeds))} for each regime\'s ladder '
              f'and its variants within 2 std of the frontier after the base seeds, at most {most} runs more',
              file=stream)
    return serial


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.study', description=__doc__.split('\n\n')[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__[__doc__.index('Example'):],
        allow_abbrev=False)
    parser.add_argument('--study', default='glyphs', choices=list(STUDIES), help='which study (default: glyphs)')
    parser.add_argument('--quick', action='store_true', help='--study quick: tiny model, data and epochs, a minute')
    parser.add_argument('--out', default='results/study', help='output folder (default: results/study)')
    parser.add_argument('--seeds', nargs='+', type=int, default=None, help='seeds (default: the study\'s)')
    parser.add_argument('--workers', type=int, default=None, help='runs at a time (default: the study\'s)')
    parser.add_argument('--fonts', nargs='+', default=None, metavar='DIR',
                        help='font folders (default: the system\'s and matplotlib\'s)')
    parser.add_argument('--icons', nargs='+', default=None, metavar='DIR',
                        help='folders of icon themes (default: /usr/share/icons)')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--report-only', action='store_true',
                      help='train nothing and write no data: the tables and pictures from the finished runs')
    mode.add_argument('--dry-run', action='store_true',
                      help='check the plan and print its commands (and a GPU plan\'s time estimate); no data, no runs')
    args = parser.parse_args(argv)
    try:
        if args.dry_run:
            dry_run('quick' if args.quick else args.study, args.out)
            return 0
        result = run_study(args.out, study='quick' if args.quick else args.study, seeds=args.seeds,
                           workers=args.workers, sources=dict(fonts=args.fonts, icons=args.icons),
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
