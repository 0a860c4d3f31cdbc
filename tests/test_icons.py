""" The icon-theme data set, built from small synthetic themes written by the tests (no Debian package needed). """
import hashlib
import json
import math
import os
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from timm_synermix.experiments import icons
from timm_synermix.experiments.icons import build_icon_dataset, find_themes, main, render_icon, theme_icons

CLASSES = [f'shape-{k:02d}' for k in range(24)]
# theme: (style, colour, classes it draws, Inherits). Numix and Numix-Circle are one family by LINEAGE,
# Gamma-Green is a recolour of Gamma (one family by measured near copies), Child inherits Delta but
# draws only two icons itself.
THEMES = {
    'Numix': ('filled', (200, 40, 40), CLASSES, ''),
    'Numix-Circle': ('disc', (200, 40, 40), CLASSES[:12], 'Numix'),
    'Gamma': ('ring', (30, 30, 220), CLASSES, ''),
    'Gamma-Green': ('ring', (0, 160, 0), CLASSES, 'Gamma'),
    'Delta': ('small', (230, 150, 0), CLASSES, ''),
    'Child': ('thin', (120, 0, 160), CLASSES[:2], 'Delta'),
    'Eps': ('bar', (0, 140, 140), CLASSES, ''),
    'Zeta': ('framed', (90, 90, 90), [c for c in CLASSES if c != 'shape-05'], ''),
}
ALIASED = ('Numix', 'Gamma', 'Delta', 'Zeta')  # 'alias-name' is a symlink to their shape-00
SMALL = dict(size=32, min_train_families=2, val_families=['Eps'])


def _polygon(k, radius, centre=(24, 24)):
    sides, turn = 3 + k % 5, math.radians(11 * k)
    return [(centre[0] + radius * math.cos(turn + 2 * math.pi * i / sides),
             centre[1] + radius * math.sin(turn + 2 * math.pi * i / sides)) for i in range(sides)]


def _draw(style, colour, k):
    """ A 48x48 RGBA drawing of class k in a theme's style: each style has its own silhouette. """
    image = Image.new('RGBA', (48, 48))
    draw = ImageDraw.Draw(image)
    if style == 'filled':
        draw.polygon(_polygon(k, 20), fill=colour)
    elif style == 'disc':
        draw.ellipse((2, 2, 45, 45), fill=colour)
        draw.polygon(_polygon(k, 14), fill=(0, 0, 0, 0))
    elif style in ('ring', 'thin'):
        draw.polygon(_polygon(k, 20 if style == 'ring' else 13), outline=colour, width=4 if style == 'ring' else 2)
    elif style == 'small':
        draw.polygon(_polygon(k, 11, (18, 18)), fill=colour)
    elif style == 'bar':
        draw.polygon(_polygon(k, 17, (24, 20)), fill=colour)
        draw.rectangle((4, 40, 43, 45), fill=colour)
    else:  # framed
        draw.rectangle((1, 1, 46, 46), outline=colour, width=3)
        draw.polygon(_polygon(k, 13), fill=colour)
    return image


def _index_theme(name, inherits, dirs):
    lines = ['[Icon Theme]', f'Name={name}', f'Inherits={inherits}', f'Directories={",".join(d for d, _ in dirs)}', '']
    for d, entry in dirs:
        lines += [f'[{d}]'] + [f'{k}={v}' for k, v in entry.items()] + ['']
    return '\n'.join(lines)


def _write_themes(root):
    """ The THEMES as PNG icon themes under root, with the traps: a symbolic folder and name, an
    alias symlink, Zeta's shape-05 pointing at its shape-04, Eps shipping Numix's shape-07 file, and
    a hicolor theme. """
    apps = ('48x48/apps', dict(Size=48, Context='Applications', Type='Fixed'))
    symbolic = ('symbolic/apps', dict(Size=16, MinSize=8, MaxSize=512, Context='Applications', Type='Scalable'))
    for name, (style, colour, classes, inherits) in [*THEMES.items(), ('hicolor', ('filled', (0, 0, 0), CLASSES, ''))]:
        folder = root / name / '48x48' / 'apps'
        folder.mkdir(parents=True)
        (root / name / 'symbolic' / 'apps').mkdir(parents=True)
        (root / name / 'index.theme').write_text(_index_theme(name, inherits, [apps, symbolic]))
        for c in classes:
            _draw(style, colour, CLASSES.index(c)).save(folder / f'{c}.png')
            _draw('filled', (0, 0, 0), CLASSES.index(c)).save(root / name / 'symbolic' / 'apps' / f'{c}.png')
        _draw('filled', (0, 0, 0), 3).save(folder / 'shape-00-symbolic.png')
        if name in ALIASED:
            os.symlink('shape-00.png', folder / 'alias-name.png')
    os.symlink('shape-04.png', root / 'Zeta' / '48x48' / 'apps' / 'shape-05.png')
    shutil.copyfile(root / 'Numix' / '48x48' / 'apps' / 'shape-07.png',
                    root / 'Eps' / '48x48' / 'apps' / 'shape-07.png')
    return root


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    return [str(_write_themes(tmp_path_factory.mktemp('themes')))]


@pytest.fixture(scope='module')
def built(roots, tmp_path_factory):
    return build_icon_dataset(tmp_path_factory.mktemp('icons') / 'set', roots=roots, **SMALL)


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


def test_lookup_takes_the_size_match_then_vector_then_larger_bitmap(tmp_path):
    theme = tmp_path / 'T'
    dirs = [('16x16/apps', dict(Size=16, Type='Fixed')), ('64x64/apps', dict(Size=64, Type='Fixed')),
            ('128x128/apps', dict(Size=128, Type='Fixed')),
            ('scalable/apps', dict(Size=16, MinSize=16, MaxSize=32, Type='Scalable')),
            ('48x48/animations', dict(Size=48, Context='Animations', Type='Fixed'))]
    for d, _ in dirs:
        (theme / d).mkdir(parents=True)
    (theme / 'index.theme').write_text(_index_theme('T', 'hicolor', dirs))
    files = {'16x16/apps': ['a', 'b', 'c'], '64x64/apps': ['a'], '128x128/apps': ['b'], 'scalable/apps': ['a', 'c'],
             '48x48/animations': ['spinner']}
    for d, names in files.items():
        for n in names:
            (theme / d / (n + ('.svg' if d.startswith('scalable') else '.png'))).write_bytes(b'x')
    os.symlink('gone.png', theme / '16x16' / 'apps' / 'broken.png')
    os.symlink('b.png', theme / '16x16' / 'apps' / 'linked.png')
    found = {n: os.path.relpath(p, theme) for n, (_, p) in theme_icons(icons.read_theme(str(theme)), 64).items()}
    # a: drawn for 64 px; b: larger bitmap (scaled down) over smaller; c: vector over a small bitmap
    assert found == {'a': '64x64/apps/a.png', 'b': '128x128/apps/b.png', 'c': 'scalable/apps/c.svg',
                     'linked': '16x16/apps/linked.png'}


def test_themes_draw_only_their_own_icons(roots):
    themes = {t['name']: t for t in find_themes(roots)}
    assert sorted(themes) == sorted(THEMES)  # hicolor, the fallback, is no design
    drawn = {name: sorted(theme_icons(t, 32)) for name, t in themes.items()}
    # Child inherits Delta's 24 icons but draws two: only those count; symbolic ones never do
    assert drawn['Child'] == ['shape-00', 'shape-01']
    assert drawn['Numix'] == sorted(CLASSES + ['alias-name'])
    assert drawn['Zeta'] == sorted(CLASSES + ['alias-name'])  # shape-05 is there, as a link to shape-04


def test_classes_images_and_counts(built):
    manifest = built['manifest']
    assert not built['reused'] and built['num_classes'] == 23
    # shape-07: Eps's only val drawing is Numix's file, a copy of a train image, so the class has no val
    assert [c['name'] for c in manifest['classes']] == [c for c in CLASSES if c != 'shape-07']
    expected = {'shape-00': 6, 'shape-01': 6, 'shape-05': 4, 'shape-06': 5}
    expected.update({c: 5 for c in CLASSES[2:5] + CLASSES[8:12]})
    expected.update({c: 4 for c in CLASSES[12:]})
    assert manifest['counts']['train'] == built['counts']['train'] == dict(sorted(expected.items()))
    assert set(manifest['counts']['val'].values()) == {1}
    by_name = {c['name']: c for c in manifest['classes']}
    # the alias is one class with shape-00; Zeta's shape-05 is its shape-04 file, so it counts for shape-04 only
    assert by_name['shape-00']['aliases'] == ['alias-name']
    assert {i['theme'] for i in by_name['shape-05']['images']} == {'Numix', 'Numix-Circle', 'Gamma', 'Delta', 'Eps'}
    assert 'Zeta' in {i['theme'] for i in by_name['shape-04']['images']}
    # Gamma-Green recolours Gamma: one family, and its drawings are near copies, never taken
    assert all(i['theme'] != 'Gamma-Green' for c in manifest['classes'] for i in c['images'])
    files = _files(built['root'])
    assert len(files) == sum(expected.values()) + 23 + 1 == 104 + 23 + 1  # images + manifest


def test_families_join_packages_lineage_and_recolours(built):
    families = {f['name']: f for f in built['manifest']['families']}
    assert {n: f['themes'] for n, f in families.items()} == {
        'Child': ['Child'], 'Delta': ['Delta'], 'Eps': ['Eps'], 'Gamma': ['Gamma', 'Gamma-Green'],
        'Numix': ['Numix', 'Numix-Circle'], 'Zeta': ['Zeta']}
    whys = {tuple(j['themes']): j['why'] for j in built['manifest']['joins']}
    assert whys[('Numix-Circle', 'Numix')] == 'LINEAGE'
    assert whys[('Gamma', 'Gamma-Green')] == 'near copies in 24 of the 24 classes both draw'
    assert built['manifest']['val_families'] == ['Eps'] and families['Eps']['images'] == {'train': 0, 'val': 23}


@pytest.mark.parametrize('seed', range(6))
def test_a_family_is_never_split(roots, tmp_path, seed):
    folder = build_icon_dataset(tmp_path / 'set', roots=roots, **dict(SMALL, val_families=1, seed=seed))
    family_of = {t: f['name'] for f in folder['manifest']['families'] for t in f['themes']}
    sides = {}
    for path in _files(folder['root']):
        if path == 'manifest.json':
            continue
        split, _, png = path.split(os.sep)
        sides.setdefault(family_of[png[:-4]], set()).add(split)
    assert all(len(s) == 1 for s in sides.values()), sides
    assert [sides[f] for f in folder['manifest']['val_families']] == [{'val'}]


def test_the_manifest_names_the_file_behind_every_image(built, roots):
    manifest = built['manifest']
    for cls in manifest['classes']:
        for image in cls['images']:
            with open(image['file'], 'rb') as f:
                assert hashlib.sha256(f.read()).hexdigest() == image['sha256']
            assert image['file'].startswith(os.path.join(roots[0], image['theme']) + os.sep)
            written = np.asarray(Image.open(os.path.join(built['root'], image['split'], cls['folder'],
                                                         image['theme'] + '.png')))
            assert (written == icons._composite(render_icon(image['file'], 32), (240, 240, 240))).all()
    assert manifest['settings']['size'] == 32 and manifest['settings']['val_families'] == ['Eps']
    with open(os.path.join(built['root'], 'manifest.json')) as f:
        assert json.load(f) == manifest


def test_same_arguments_reuse_the_folder_and_other_inputs_rebuild_it(roots, tmp_path):
    first = build_icon_dataset(tmp_path / 'set', roots=roots, **SMALL)
    stamp = {p: os.stat(os.path.join(first['root'], p)).st_mtime_ns for p in _files(first['root'])}
    again = build_icon_dataset(tmp_path / 'set', roots=roots, **SMALL)
    assert again['reused'] and again['manifest'] == first['manifest']
    assert {p: os.stat(os.path.join(first['root'], p)).st_mtime_ns for p in _files(first['root'])} == stamp
    other = build_icon_dataset(tmp_path / 'set', roots=roots, **dict(SMALL, train_per_class=3))
    assert not other['reused']
    for cls in other['manifest']['classes']:  # the cap takes one image per family first
        train = [i['family'] for i in cls['images'] if i['split'] == 'train']
        assert len(train) == 3 and len(set(train)) == 3


def test_no_themes_exits_2_saying_what_to_install(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / 'out'), '--roots', str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 'apt-get install papirus-icon-theme' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / 'out').exists()


@pytest.mark.skipif(shutil.which('rsvg-convert') is None, reason='needs librsvg2-bin (rsvg-convert)')
def test_svg_is_rendered_to_fit_the_square(tmp_path):
    svg = tmp_path / 'wide.svg'
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
                   '<rect width="40" height="20" fill="#ff0000"/></svg>')
    rgba = render_icon(str(svg), 32)
    assert rgba.shape == (32, 32, 4)
    covered = rgba[..., 3] == 255
    assert covered.sum() == 32 * 16 and (rgba[covered][:, :3] == (255, 0, 0)).all()  # aspect kept, centred
    assert covered[8:24].all() and not covered[:8].any()
