""" The font-rendered character data set, built from matplotlib's bundled fonts only (every install has them). """
import hashlib
import json
import os
import re
import sys

import numpy as np
import pytest
from PIL import Image

from timm_synermix.experiments.fonts import CLASSES, HOMOGLYPHS, build_font_dataset, dropped_note, main

MPL_FONTS = os.path.join(os.path.dirname(__import__('matplotlib').__file__), 'mpl-data', 'fonts', 'ttf')
# seed 1 puts two of matplotlib's seven design groups in val: Computer Modern roman (Latin only) and
# DejaVu Serif (every class); train keeps DejaVu Sans, DejaVu Sans Mono, STIX, cmss10 and cmtt10.
SPLIT = dict(fonts_dirs=[MPL_FONTS], seed=1, val_families=2)
ALL = dict(SPLIT, train_fonts_per_class=None, val_fonts_per_class=None, min_train_fonts=2)


def _tree(root):
    """ {relative path: bytes} of every file under root. """
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), 'rb').read()
            for d, _, files in os.walk(root) for f in files}


def _ink(path):
    return 255 - np.asarray(Image.open(path).convert('L')).astype(int)


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    return build_font_dataset(tmp_path_factory.mktemp('fonts') / 'all', **ALL)


def test_class_table_keeps_one_class_per_glyph_shape():
    chars = [c['char'] for c in CLASSES]
    assert len(CLASSES) == len(set(chars)) == 124
    assert [c['script'] for c in CLASSES].count('latin') == 62
    # every Greek and Cyrillic letter of the basic blocks is either a class or a named homoglyph
    letters = [chr(cp) for cp in [*range(0x391, 0x3AA), *range(0x3B1, 0x3CA), *range(0x410, 0x450)] if cp != 0x3A2]
    assert sorted(letters) == sorted([ch for ch in chars if ord(ch) > 0x7F] + list(HOMOGLYPHS))
    assert all(target in chars for target in HOMOGLYPHS.values())
    twins = {  # never a class beside the class of the same shape
        '\u0391': 'A', '\u0410': 'A',  # Greek Alpha, Cyrillic A
        '\u0392': 'B', '\u0412': 'B',  # Greek Beta, Cyrillic Ve
        '\u0395': 'E', '\u0415': 'E', '\u0397': 'H', '\u041D': 'H', '\u03A1': 'P', '\u0420': 'P',
        '\u0421': 'C', '\u03A7': 'X', '\u0425': 'X', '\u039F': 'O', '\u041E': 'O',
        '\u0430': 'a', '\u03BF': 'o', '\u043E': 'o', '\u0440': 'p', '\u03C1': 'p', '\u0441': 'c',
        '\u0435': 'e', '\u0445': 'x', '\u0443': 'y',
        '\u0413': '\u0393', '\u043A': '\u03BA',  # Cyrillic Ghe and ka: Greek Gamma and kappa are the classes
    }
    for homoglyph, twin in twins.items():
        assert HOMOGLYPHS[homoglyph] == twin and homoglyph not in chars and twin in chars
    names = [c['name'] for c in CLASSES]
    assert all(re.fullmatch(r'U[0-9A-F]{4}_[a-z0-9_]+', n) for n in names)
    assert len({n.lower() for n in names}) == 124  # distinct on case-insensitive file systems
    assert {c['name'] for c in CLASSES if c['char'] in 'Aa'} == {'U0041_latin_capital_a', 'U0061_latin_small_a'}


def test_class_counts_follow_the_character_maps_of_the_fonts(built):
    from fontTools.ttLib import TTFont
    manifest = built['manifest']
    assert built['num_classes'] == 124 and not built['reused']
    expected = {s: {c['name']: 0 for c in CLASSES} for s in ('train', 'val')}
    for font in manifest['fonts']:
        with TTFont(font['file'], lazy=True) as tt:
            cmap = tt.getBestCmap()
        for c in CLASSES:
            expected[font['split']][c['name']] += ord(c['char']) in cmap
    assert manifest['counts'] == expected == built['counts']
    assert set(expected['train'].values()) == {14, 12} and set(expected['val'].values()) == {7, 4}
    # Computer Modern has no Greek or Cyrillic: its files are only in the 62 Latin folders
    cmr = {os.path.dirname(p) for p in _tree(built['root']) if p.endswith(os.sep + 'cmr10.png')}
    assert len(cmr) == 62 and all(p.startswith(os.path.join('val', 'U00')) for p in cmr)
    # symbol and last-resort fonts map the Latin code points too, but are not used
    skipped = {os.path.basename(s['file']): s['reason'] for s in manifest['skipped']}
    assert 'symbol font' in skipped['cmsy10.ttf'] and 'symbol font' in skipped['LastResortHE-Regular.ttf']


def test_split_is_by_family_and_every_font_is_in_the_manifest(built):
    manifest, tree = built['manifest'], _tree(built['root'])
    fonts = {f['stem']: f for f in manifest['fonts']}
    sides = {s: {f['family'] for f in fonts.values() if f['split'] == s} for s in ('train', 'val')}
    assert sides['val'] == {'cmr10', 'cmb10', 'cmti10', 'DejaVu Serif'}
    assert not sides['train'] & sides['val']
    assert manifest['val_groups'] == ['cmr10', 'dejavuserif']
    for path in tree:
        if path != 'manifest.json':
            split, _, name = path.split(os.sep)
            assert fonts[name[:-len('.png')]]['split'] == split
    for font in fonts.values():
        assert font['family'] and font['sha256'] == hashlib.sha256(open(font['file'], 'rb').read()).hexdigest()
        assert font['images'] == sum(p.endswith(os.sep + font['stem'] + '.png') for p in tree)
    assert len(fonts) == 21 and sum(f['images'] for f in fonts.values()) == len(tree) - 1


def test_images_keep_case_in_size_and_baseline(built):
    manifest = built['manifest']
    size, baseline = manifest['render']['canvas'], manifest['render']['baseline_row']
    folder = {c['char']: c['name'] for c in manifest['classes']}
    for font in (f for f in manifest['fonts'] if f['split'] == 'train'):
        ink = {ch: _ink(os.path.join(built['train'], folder[ch], font['stem'] + '.png')) for ch in 'oOxXpH'}
        rows = {ch: np.flatnonzero(a.max(1) > 64) for ch, a in ink.items()}
        assert rows['o'][0] > rows['O'][0] + 3 and rows['x'][0] > rows['X'][0] + 3, font['stem']
        assert ink['o'].sum() < ink['O'].sum()
        assert abs(rows['o'][-1] - rows['O'][-1]) <= 1  # one baseline
        assert rows['p'][-1] > baseline + 2 >= rows['H'][-1] + 2  # descender below it
    img = Image.open(os.path.join(built['val'], folder['Ж'], 'DejaVuSerif.png'))
    pixels = np.asarray(img)
    assert img.mode == 'RGB' and img.size == (size, size) == (32, 32)
    assert (pixels[..., 0] == pixels[..., 2]).all() and pixels[0, 0, 0] == 255 and pixels.min() == 0


def test_builds_are_deterministic_reused_and_rebuilt_on_new_inputs(built, tmp_path):
    again = build_font_dataset(tmp_path / 'again', **ALL)
    assert _tree(again['root']) == _tree(built['root'])
    reused = build_font_dataset(tmp_path / 'again', **ALL)
    assert reused['reused'] and reused['manifest'] == again['manifest']
    smaller = build_font_dataset(tmp_path / 'again', **dict(ALL, size=16))
    assert not smaller['reused'] and smaller['manifest']['digest'] != again['manifest']['digest']
    assert Image.open(os.path.join(smaller['train'], CLASSES[0]['name'], 'DejaVuSans.png')).size == (16, 16)
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('x')
    with pytest.raises(ValueError, match='remove it or pick another'):
        build_font_dataset(tmp_path / 'other', **ALL)
    assert sorted(os.listdir(tmp_path)) == ['again', 'other']  # no temporary folder left behind


def test_caps_take_fonts_round_robin_over_groups_and_drop_thin_classes(tmp_path):
    capped = build_font_dataset(tmp_path / 'capped', size=16, train_fonts_per_class=3, val_fonts_per_class=2,
                                min_train_fonts=3, **SPLIT)
    assert capped['num_classes'] == 124
    assert set(capped['counts']['train'].values()) == {3} and set(capped['counts']['val'].values()) == {2}
    group = {f['stem']: f['group'] for f in capped['manifest']['fonts']}
    for name in os.listdir(capped['train']):
        stems = [f[:-len('.png')] for f in os.listdir(os.path.join(capped['train'], name))]
        assert len({group[s] for s in stems}) == 3, name  # three designs, not three weights of one
    # only the Latin classes have 13 train fonts (Greek and Cyrillic: 12)
    latin = build_font_dataset(tmp_path / 'latin', size=16, **dict(ALL, min_train_fonts=13))
    assert latin['num_classes'] == 62 and all(c['script'] == 'latin' for c in latin['manifest']['classes'])
    greek = build_font_dataset(tmp_path / 'greek', size=16, scripts=('greek',), **SPLIT, min_train_fonts=2)
    assert greek['num_classes'] == 27 and sorted(os.listdir(greek['train'])) == sorted(os.listdir(greek['val']))


def test_classes_dropped_for_too_few_fonts_are_named_per_script(tmp_path, capsys):
    main(['--out', str(tmp_path / 'f'), '--fonts', MPL_FONTS, '--seed', '1', '--val-families', '2', '--size', '16',
          '--train-fonts', '0', '--val-fonts', '0', '--min-train-fonts', '13', '--scripts', 'greek,cyrillic,latin'])
    out = capsys.readouterr().out
    assert 'wrote ' in out and ': 62 classes' in out
    assert out.splitlines()[-1] == ('note: dropped 27 of 27 greek, 35 of 35 cyrillic classes: fewer than 13 train or 1 '
                                    'val fonts draw them (add fonts with --fonts DIR, or lower --min-train-fonts)')
    manifest = json.loads((tmp_path / 'f' / 'manifest.json').read_text(encoding='utf-8'))
    assert dropped_note(dict(manifest, classes=manifest['classes'] + [c for c in CLASSES if c['script'] != 'latin'
                                                                      ])) == ''


def test_without_fonttools_family_comes_from_pillow(tmp_path, monkeypatch):
    for module in ('fontTools', 'fontTools.ttLib', 'fontTools.agl'):
        monkeypatch.setitem(sys.modules, module, None)  # import fails
    folder = build_font_dataset(tmp_path / 'pil', size=16, **ALL)
    families = {f['family'] for f in folder['manifest']['fonts']}
    assert {'DejaVu Sans', 'DejaVu Serif', 'STIXGeneral'} <= families
    assert folder['manifest']['renderer']['fonttools'] is None and folder['num_classes'] == 124
    skipped = {os.path.basename(s['file']): s['reason'] for s in folder['manifest']['skipped']}
    assert 'distinct glyphs' in skipped['LastResortHE-Regular.ttf']


def test_cli_writes_folders_timm_reads_and_names_the_fix_without_fonts(tmp_path, capsys):
    from timm.data import ImageDataset
    main(['--out', str(tmp_path / 'f'), '--fonts', MPL_FONTS, '--seed', '1', '--val-families', '2',
          '--size', '16', '--train-fonts', '2', '--val-fonts', '1', '--min-train-fonts', '2'])
    assert re.search(r'wrote .*: 124 classes, 248 train / 124 val images from 4 of 21 usable fonts, '
                     r'7 design groups \(2 in val\)', capsys.readouterr().out)
    train, val = (ImageDataset(str(tmp_path / 'f' / s)) for s in ('train', 'val'))
    assert len(train) == 248 and len(val) == 124 and train.reader.class_to_idx == val.reader.class_to_idx
    img, target = val[0]
    assert img.mode == 'RGB' and img.size == (16, 16) and 0 <= target < 124
    assert json.loads((tmp_path / 'f' / 'manifest.json').read_text(encoding='utf-8'))['version'] == 1

    (tmp_path / 'empty').mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(['--out', str(tmp_path / 'g'), '--fonts', str(tmp_path / 'empty')])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'apt-get install fonts-dejavu-core' in err and '--fonts DIR' in err
    assert not (tmp_path / 'g').exists()
