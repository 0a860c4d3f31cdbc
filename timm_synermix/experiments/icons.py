""" Icons of one name as drawn by the installed icon themes, written as a many-class timm ImageFolder.

A second kind of real data beside the glyphs (``fonts.py``): colour drawings of one concept (``folder``,
``edit-copy``, ``firefox``, ``text-x-python``) by independent designers. One class per icon name, one
image per theme that draws it; validation on held-out theme families.

* Themes: folders with an ``index.theme`` under ``roots`` (default ``/usr/share/icons``, where
  Debian's ``*-icon-theme`` packages install), except the fallback theme hicolor. An icon counts for a
  theme only if the theme draws it in its own directories: the icons it ``Inherits`` are another
  theme's drawings. Monochrome icons (``-symbolic`` names, ``symbolic``/``panel`` folders) and
  animation strips are left out.
* Lookup (freedesktop icon theme spec): of a name's files in the theme's ``Directories``, one drawn
  for the output size (the spec's exact match), else a vector file, else the smallest bitmap at least
  that large, else the largest; symlinks followed. SVG is rendered by librsvg's ``rsvg-convert`` (what
  GTK draws these icons with), PNG scaled with Pillow (Lanczos); composited on a fixed background.
* Classes: a name, merged with the names the themes mostly give the very same file (``folder``,
  ``inode-directory``, ``gtk-directory``...). Within one theme a file serves one class only (a theme
  that points ``text-x-python`` at its ``text-x-generic`` has drawn no Python icon).
* Families, the unit of the split: themes of one Debian source package (Papirus, Papirus-Dark,
  ePapirus ...; the GNOME-Colors recolours), joined with the known derivations in ``LINEAGE`` and with
  every family whose drawings are near copies of its own in many classes (measured, ``_COPY_RATE``).
* Images: per class, themes are taken train families first; a drawing that is a near copy of one
  already taken for the class (a recolour, or an application's own logo that two themes ship) is not
  taken again, so a validation image is never a copy of a training image. Validation takes at most
  ``val_per_family`` images per family and class (default 1: one image, one independent design).

Output: ``OUT/train/<class>/<theme>.png``, ``OUT/val/<class>/<theme>.png`` and ``OUT/manifest.json``
(classes with their aliases and the file behind every image, families with their themes, packages
and split, counts, settings). Every class is in both splits.

Example:
    python -m timm_synermix.experiments.icons data/icons --size 64
    python -m timm_synermix.experiments.icons data/icons-3 --val-families 3 --seed 1
"""
import argparse
import configparser
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from .fonts import _read_manifest, _sha256

__all__ = ['DEFAULT_VAL_FAMILIES', 'LINEAGE', 'read_theme', 'find_themes', 'theme_icons', 'theme_packages',
           'render_icon', 'build_icon_dataset', 'read_icon_dataset', 'main']

_VECTOR = ('.svg', '.svgz')
_BITMAP = ('.png',)
# Not designs of their own: hicolor is the fallback where applications install their own icons,
# locolor its 8-bit twin.
_NOT_DESIGNS = ('hicolor', 'locolor')
# Monochrome by design (GTK recolours them to the text colour): names and folders with these marks.
_MONOCHROME = re.compile(r'(^|[-./])(symbolic|panel)([-./]|$)')
_ANIMATIONS = 'animations'  # a Context whose files are strips of frames, not one picture
# Derivations across Debian source packages, child theme -> the theme it derives from: the Numix
# project's circle variant of Numix's application icons; Moka, the application set of Faba's design
# (it inherits Faba and its package depends on it); Yaru, whose icons started from Suru's. Forks that
# still share drawings (Obsidian from Faenza, MATE from GNOME 2, elementary-xfce from elementary,
# Mint-Y from Moka) are found by measurement too, but are named here so the split does not hang on a threshold.
LINEAGE = {
    'Numix-Circle': 'Numix', 'Moka': 'Faba', 'Yaru': 'suru', 'Obsidian': 'Faenza', 'mate': 'gnome',
    'elementary-xfce': 'elementary', 'Mint-Y': 'Moka',
}
# Held out by default; see docs/icons.md "The split" for why these.
DEFAULT_VAL_FAMILIES = ('breeze', 'Tango', 'Paper')
# Near copy: the same silhouette (Ruzicka overlap of the 16x16 alpha >= 0.97) and the same shading up
# to a recolour or an inversion (|correlation| of the 16x16 luminance >= 0.8). Measured on Debian's
# themes: 84 % of the pairs of one icon within a family, 0.3 % between unrelated families.
_SILHOUETTE, _SHADING = 0.97, 0.8
# Two families are one when this share of the classes both draw are near copies (at least _COPY_MIN
# shared classes). Measured: Faenza/Obsidian 0.48 ... Adwaita/MATE 0.17; next, unrelated, 0.075.
_COPY_RATE, _COPY_MIN = 0.1, 20
# An icon shows on the background when this share of its pixels differs from it by more than this
# many levels in some channel (Suru's mid-grey action glyphs on a mid-grey background would not).
_INK_LEVEL, _INK_SHARE = 24, 0.02
_MANIFEST = 'manifest.json'
_KIND = 'timm_synermix.icons'
_VERSION = 1


def _read_index(path):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # keys are case-sensitive in the spec
    parser.read(path, encoding='utf-8')
    return parser


def _directory(parser, subdir):
    """ A theme directory's spec entry: nominal pixel size, scale, type and the sizes it serves. """
    section = parser[subdir] if parser.has_section(subdir) else {}

    def number(key, default):
        try:
            return int(section.get(key, default))
        except (TypeError, ValueError):
            return default

    size = number('Size', 0)
    return dict(
        path=subdir, size=size, scale=max(number('Scale', 1), 1), type=section.get('Type', 'Threshold'),
        min=number('MinSize', size), max=number('MaxSize', size), threshold=number('Threshold', 2),
        context=section.get('Context', '').strip().lower())


def read_theme(theme_dir):
    """ The index.theme of a theme folder as a dict (name, dir, title, inherits, directories), or None
    when it has none or lists no directories (cursor themes, aliases such as ``default``). """
    index = os.path.join(theme_dir, 'index.theme')
    if not os.path.isfile(index):
        return None
    parser = _read_index(index)
    if not parser.has_section('Icon Theme'):
        return None
    head = parser['Icon Theme']
    subdirs = [d.strip() for key in ('Directories', 'ScaledDirectories')
               for d in head.get(key, '').split(',') if d.strip()]
    if not subdirs:
        return None
    return dict(
        name=os.path.basename(os.path.normpath(theme_dir)), dir=os.path.abspath(theme_dir),
        title=head.get('Name', ''), inherits=[t.strip() for t in head.get('Inherits', '').split(',') if t.strip()],
        directories=[_directory(parser, d) for d in dict.fromkeys(subdirs)])


def find_themes(roots):
    """ The icon themes (``read_theme``) in the given folders, but not the fallback theme hicolor,
    sorted by name; a theme name found twice is taken from the first root. """
    themes = {}
    for root in roots:
        if not os.path.isdir(root):
            continue
        for entry in sorted(os.listdir(root)):
            if entry in themes or entry in _NOT_DESIGNS:
                continue
            theme = read_theme(os.path.join(root, entry))
            if theme is not None:
                themes[entry] = theme
    return [themes[k] for k in sorted(themes)]


def _matches(directory, size):
    """ The spec's DirectoryMatchesSize: the folder's icons are drawn for this size. """
    if directory['scale'] != 1:
        return False
    if directory['type'] == 'Fixed':
        return directory['size'] == size
    if directory['type'] == 'Scalable':
        return directory['min'] <= size <= directory['max']
    return abs(directory['size'] - size) <= directory['threshold']


def _preference(candidate, size):
    """ Sort key of one file of an icon: a folder drawn for ``size`` first (the spec's exact match),
    then a vector file (it renders sharp at any size), then a bitmap at least ``size`` pixels (scaled
    down) before a smaller one (scaled up, blurred), then the nearest nominal size. """
    directory, path = candidate
    vector = path.endswith(_VECTOR)
    nominal = directory['size'] * directory['scale']
    return (not _matches(directory, size), not vector, not vector and nominal < size, abs(nominal - size), path)


def theme_icons(theme, size):
    """ {icon name: (directory entry, file)} of the icons a theme draws itself, one file per name chosen
    for ``size`` pixels. Only the theme's own folders count: an icon it would take from the themes it
    inherits is another design. Symlinks are followed (broken ones skipped); monochrome icons
    (``-symbolic`` names, ``symbolic`` and ``panel`` folders) and animation strips are left out. """
    found = {}
    for directory in theme['directories']:
        if _MONOCHROME.search(directory['path']) or directory['context'] == _ANIMATIONS:
            continue
        folder = os.path.join(theme['dir'], directory['path'])
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        for entry in entries:
            stem, ext = os.path.splitext(entry)
            if ext.lower() not in _VECTOR + _BITMAP or _MONOCHROME.search(stem):
                continue
            path = os.path.join(folder, entry)
            if os.path.isfile(path):
                found.setdefault(stem, []).append((directory, path))
    return {name: min(candidates, key=lambda c: _preference(c, size)) for name, candidates in found.items()}


def theme_packages(themes):
    """ {theme name: dict(package, version, source)} from dpkg for the themes a Debian package
    installed; empty without dpkg. """
    try:
        owners = subprocess.run(['dpkg-query', '-S'] + [os.path.join(t['dir'], 'index.theme') for t in themes],
                                capture_output=True, text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    by_dir = {t['dir']: t['name'] for t in themes}
    package_of = {}
    for line in owners.splitlines():
        package, _, path = line.partition(': ')
        theme = by_dir.get(os.path.dirname(path.strip()))
        if theme is not None and ',' not in package:
            package_of[theme] = package.split(':')[0]  # the architecture qualifier is not part of the name
    if not package_of:
        return {}
    listing = subprocess.run(
        ['dpkg-query', '-W', '-f', '${Package}\t${Version}\t${source:Package}\n'] + sorted(set(package_of.values())),
        capture_output=True, text=True, timeout=120).stdout
    info = {p: dict(package=p, version=v, source=s or p)
            for p, v, s in (line.split('\t') for line in listing.splitlines() if line.count('\t') == 2)}
    return {t: info[p] for t, p in package_of.items() if p in info}


def _rsvg_version():
    try:
        return subprocess.run(['rsvg-convert', '--version'], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _fit(image, size):
    """ An RGBA PIL image scaled to fit size x size (aspect kept) and centred on a transparent canvas. """
    from PIL import Image
    scale = size / max(image.size)
    if scale != 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    canvas = Image.new('RGBA', (size, size))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return canvas


def render_icon(path, size):
    """ RGBA pixels (uint8 [size, size, 4]) of an icon file, scaled to fit the square: SVG through
    librsvg's ``rsvg-convert`` (the renderer GTK draws these icons with), PNG with Pillow. """
    from PIL import Image
    if path.endswith(_VECTOR):
        done = subprocess.run(['rsvg-convert', '--width', str(size), '--height', str(size), '--keep-aspect-ratio',
                               path], capture_output=True, timeout=60)
        if done.returncode != 0:
            raise ValueError('rsvg-convert: ' + done.stderr.decode(errors='replace').strip()[-200:])
        image = Image.open(io.BytesIO(done.stdout))
    else:
        image = Image.open(path)
    return np.asarray(_fit(image.convert('RGBA'), size))


def _composite(rgba, background):
    """ uint8 RGB of RGBA pixels over a solid background colour. """
    alpha = rgba[..., 3:].astype(np.float32) / 255.
    out = rgba[..., :3] * alpha + np.asarray(background, np.float32) * (1. - alpha)
    return np.round(out).astype(np.uint8)


def _features(rgba):
    """ (luminance, alpha) at 16x16 for the near-copy test: the luminance over mid grey, centred and
    of unit norm (a recolour that keeps the shading keeps it), the alpha as coverage in [0, 1]. """
    from PIL import Image
    small = np.asarray(Image.fromarray(rgba).resize((16, 16), Image.Resampling.BOX), np.float32) / 255.
    grey = _composite(np.round(small * 255).astype(np.uint8), (128, 128, 128)).astype(np.float32)
    lum = (grey @ np.array([0.299, 0.587, 0.114], np.float32)).ravel()
    lum -= lum.mean()
    return lum / max(float(np.linalg.norm(lum)), 1e-6), small[..., 3].ravel()


def _near_copies(feats, others):
    """ Boolean [len(feats), len(others)]: which pairs are near copies (same silhouette, same shading
    up to a recolour or inversion). """
    lum_a, alpha_a = (np.stack(x) for x in zip(*feats))
    lum_b, alpha_b = (np.stack(x) for x in zip(*others))
    shading = np.abs(lum_a @ lum_b.T)
    overlap = np.minimum(alpha_a[:, None], alpha_b[None]).sum(-1) / np.maximum(
        np.maximum(alpha_a[:, None], alpha_b[None]).sum(-1), 1e-6)
    return (shading >= _SHADING) & (overlap >= _SILHOUETTE)


def _union_find(items, pairs):
    """ {item: the smallest item of its connected group} for undirected pairs. """
    parent = {i: i for i in items}

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {i: root(i) for i in items}


def _package_joins(themes, packages):
    """ (theme, theme, why) pairs that are one family before any measurement: one Debian source
    package, or a derivation in ``LINEAGE``. """
    names = {t['name'] for t in themes}
    first, joins = {}, []
    for theme in sorted(names):
        if theme in packages:
            source = packages[theme]['source']
            if source in first:
                joins.append((first[source], theme, f'source package {source}'))
            else:
                first[source] = theme
    joins += [(child, parent, 'LINEAGE') for child, parent in sorted(LINEAGE.items())
              if child in names and parent in names]
    return joins


def _alias_pairs(icons, shas, family_of, names):
    """ Pairs of names that most families drawing both point at one file (two names of one concept),
    in two families at least; and names that differ only in case (one folder on some file systems). """
    same = {}
    for theme, drawn in icons.items():
        by_file = {}
        for name in names:
            if name in drawn:
                by_file.setdefault(shas[drawn[name][1]], []).append(name)
        for group in by_file.values():
            for i, a in enumerate(group):
                for b in group[i + 1:]:
                    same.setdefault((a, b), set()).add(family_of[theme])
    pairs = []
    for (a, b), families in same.items():
        if len(families) >= 2:
            both = {family_of[t] for t, drawn in icons.items() if a in drawn and b in drawn}
            if 2 * len(families) > len(both):
                pairs.append((a, b))
    folded = {}
    for name in names:
        folded.setdefault(name.casefold(), []).append(name)
    return pairs + [(g[0], other) for g in folded.values() for other in g[1:]]


def _name_families(icons, family_of):
    """ {icon name: the families that draw it}. """
    families = {}
    for theme, drawn in icons.items():
        for name in drawn:
            families.setdefault(name, set()).add(family_of[theme])
    return families


def _plan_classes(icons, shas, family_of, families, names):
    """ The classes: the names, merged with their aliases, most drawn first; per class {theme:
    drawing}, the theme's file of the class's first name it draws, unless a class ranked before took
    that file in this theme. """
    rank = {n: (-len(families[n]), n) for n in names}
    group_of = _union_find(names, _alias_pairs(icons, shas, family_of, names))
    groups = {}
    for name in names:
        groups.setdefault(group_of[name], []).append(name)
    groups = [sorted(g, key=rank.get) for g in groups.values()]
    groups.sort(key=lambda g: (-len(set().union(*(families[n] for n in g))), rank[g[0]]))
    used, classes = {theme: set() for theme in icons}, []
    for members in groups:
        drawings = {}
        for theme, drawn in icons.items():
            name = next((n for n in members if n in drawn), None)
            if name is None or shas[drawn[name][1]] in used[theme]:
                continue
            directory, path = drawn[name]
            used[theme].add(shas[path])
            drawings[theme] = dict(icon=name, file=path, context=directory['context'], sha256=shas[path])
        classes.append(dict(name=members[0], aliases=members[1:], drawings=drawings))
    return classes


def _copy_rates(classes, feats, family_of, order):
    """ {(family, family): (near copies, classes both draw)} over each family's first drawing per class. """
    counts = {}
    for cls in classes:
        base = {}
        for theme in order:
            drawing = cls['drawings'].get(theme)
            if drawing is not None and drawing['file'] in feats:
                base.setdefault(family_of[theme], feats[drawing['file']])
        names = sorted(base)
        if len(names) < 2:
            continue
        near = _near_copies([base[f] for f in names], [base[f] for f in names])
        for i, a in enumerate(names):
            for j in range(i + 1, len(names)):
                copies, shared = counts.get((a, names[j]), (0, 0))
                counts[a, names[j]] = (copies + int(near[i, j]), shared + 1)
    return counts


def _family_table(themes, family_of, icons):
    """ (family name of each theme, themes in taking order): in a family, first the themes that inherit
    from none of its themes (breeze before breeze-dark), then those that draw the most icons; the
    first names the family. """
    parents = {t['name']: set(t['inherits']) for t in themes}
    members = {}
    for t in parents:
        members.setdefault(family_of[t], set()).add(t)
    order = sorted(parents, key=lambda t: (family_of[t], bool(parents[t] & members[family_of[t]]),
                                           -len(icons[t]), t))
    name_of_root = {}
    for theme in order:
        name_of_root.setdefault(family_of[theme], theme)
    return {t: name_of_root[family_of[t]] for t in parents}, order


def _split(families, val_families, seed):
    """ The held-out families: those named (a family or any theme in it), or a seeded draw of a count. """
    names = sorted(set(families.values()))
    if isinstance(val_families, int):
        chosen = [names[i] for i in np.random.default_rng(seed).permutation(len(names))[:val_families]]
    else:
        unknown = [v for v in val_families if v not in families]
        if unknown:
            raise ValueError(f'val_families: no theme or family named {", ".join(unknown)}; '
                             f'the families here: {", ".join(names)}.')
        chosen = [families[v] for v in val_families]
    if not chosen or set(chosen) == set(names):
        raise ValueError(f'val_families must hold out some but not all of the {len(names)} families, '
                         f'got {val_families!r}.')
    return sorted(set(chosen))


def _take_images(cls, feats, family, split_of, order, val_per_family):
    """ Themes whose drawing of the class is taken: train families first, then val; a drawing that is
    a near copy of one taken before is skipped, and val takes ``val_per_family`` per family at most. """
    taken, taken_feats, per_family = [], [], {}
    for theme in sorted(order, key=lambda t: split_of[family[t]] == 'val'):  # stable: keeps the family order
        drawing = cls['drawings'].get(theme)
        if drawing is None or drawing['file'] not in feats:
            continue
        feat, group = feats[drawing['file']], family[theme]
        if taken_feats and _near_copies([feat], taken_feats).any():
            continue
        if split_of[group] == 'val' and val_per_family and per_family.get(group, 0) >= val_per_family:
            continue
        per_family[group] = per_family.get(group, 0) + 1
        taken.append(theme)
        taken_feats.append(feat)
    return taken


def _cap(themes, family, cap, rng):
    """ At most ``cap`` of the themes, taken one family at a time in a seeded family order (as many
    designs as the cap allows), in their given order within a family. """
    queues = {}
    for theme in themes:
        queues.setdefault(family[theme], []).append(theme)
    order = [sorted(queues)[i] for i in rng.permutation(len(queues))]
    picked, limit = [], cap or len(themes)
    while len(picked) < limit:
        for f in order:
            if queues[f] and len(picked) < limit:
                picked.append(queues[f].pop(0))
        if not any(queues.values()):
            break
    return picked


def _missing_message(roots):
    return (f'No icon theme (a folder with an index.theme listing its directories) under '
            f'{", ".join(roots) or "no folder"}. Install Debian\'s icon themes and librsvg\'s renderer as root '
            f'(make icons, or apt-get install papirus-icon-theme breeze-icon-theme ... librsvg2-bin) '
            f'or pass --roots DIR.')


def _index(settings):
    """ Themes, their own icons, packages and package families, and the sha256 of the files of every
    name drawn by enough families to become a class: everything the output depends on but the pixels. """
    themes = find_themes(settings['roots'])
    if not themes:
        raise ValueError(_missing_message(settings['roots']))
    icons = {t['name']: theme_icons(t, settings['size']) for t in themes}
    packages = theme_packages(themes)
    joins = _package_joins(themes, packages)
    family_of = _union_find(list(icons), [(a, b) for a, b, _ in joins])
    families = _name_families(icons, family_of)
    names = sorted(n for n, f in families.items() if len(f) >= settings['min_train_families'] + 1)  # and a val one
    files = {icons[t][n][1] for t in icons for n in names if n in icons[t]}
    real = {f: os.path.realpath(f) for f in files}
    digests = {r: _sha256(r) for r in set(real.values())}
    return dict(themes=themes, icons=icons, packages=packages, joins=joins, family_of=family_of,
                families=families, names=names, shas={f: digests[real[f]] for f in files})


def _digest(index, settings):
    drawings = sorted([t, n, index['icons'][t][n][1], index['shas'][index['icons'][t][n][1]]]
                      for t in index['icons'] for n in index['names'] if n in index['icons'][t])
    inputs = dict(kind=_KIND, version=_VERSION, settings=settings, renderer=_renderer(),
                  packages=index['packages'], drawings=drawings)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _renderer():
    import PIL
    return dict(rsvg_convert=_rsvg_version(), pillow=PIL.__version__)


def _visible(rgba, background):
    """ Whether an icon shows on the background: a grey glyph drawn for another panel colour may not. """
    difference = np.abs(_composite(rgba, background).astype(int) - np.asarray(background)).max(-1)
    return (difference > _INK_LEVEL).mean() >= _INK_SHARE


def _render_all(classes, size, background):
    """ {file: RGBA pixels} of every drawing, and [{file, reason}] of those that did not render or do not
    show on the background. """
    files = sorted({d['file'] for c in classes for d in c['drawings'].values()})
    if any(f.endswith(_VECTOR) for f in files) and shutil.which('rsvg-convert') is None:
        raise ValueError('rsvg-convert not found: install librsvg\'s renderer (apt-get install librsvg2-bin).')
    by_real, pixels, left_out = {}, {}, []
    for f in files:
        real = os.path.realpath(f)
        if real not in by_real:
            try:
                by_real[real] = render_icon(real, size)
            except (OSError, ValueError, subprocess.SubprocessError) as e:  # a broken file is skipped, not fatal
                by_real[real] = None
                left_out.append(dict(file=f, reason=f'{type(e).__name__}: {str(e)[:200]}'))
        if by_real[real] is None:
            continue
        if _visible(by_real[real], background):
            pixels[f] = by_real[real]
        else:
            left_out.append(dict(file=f, reason='does not show on the background'))
    return pixels, left_out


def _plan(index, settings):
    """ Classes with their train and val themes, families, split, joins and the drawings left out. """
    icons, themes = index['icons'], index['themes']
    classes = _plan_classes(icons, index['shas'], index['family_of'], index['families'], index['names'])
    enough = settings['min_train_families'] + 1  # and one val family
    classes = [c for c in classes if len({index['family_of'][t] for t in c['drawings']}) >= enough]
    pixels, left_out = _render_all(classes, settings['size'], settings['background'])
    feats = {f: _features(p) for f, p in pixels.items()}
    family, order = _family_table(themes, index['family_of'], icons)
    rates = _copy_rates(classes, feats, family, order)
    copy_joins = [(a, b, f'near copies in {c} of the {n} classes both draw')
                  for (a, b), (c, n) in sorted(rates.items()) if n >= _COPY_MIN and c >= _COPY_RATE * n]
    joins = index['joins'] + copy_joins
    family, order = _family_table(themes, _union_find(list(icons), [(a, b) for a, b, _ in joins]), icons)
    val = _split(family, settings['val_families'], settings['seed'])
    split_of = {f: 'val' if f in val else 'train' for f in family.values()}
    rng = np.random.default_rng(settings['seed'])
    kept = []
    for cls in classes:
        taken = _take_images(cls, feats, family, split_of, order, settings['val_per_family'])
        train = [t for t in taken if split_of[family[t]] == 'train']
        val_themes = [t for t in taken if split_of[family[t]] == 'val']
        cls['train_families'] = len({family[t] for t in train})
        cls['train'] = _cap(train, family, settings['train_per_class'], rng)
        cls['val'] = _cap(val_themes, family, settings['val_per_class'], rng)
        if cls['train_families'] >= settings['min_train_families'] and len(cls['val']) >= settings['min_val_images']:
            kept.append(cls)
    if not kept:
        raise ValueError(f'No class is drawn by {settings["min_train_families"]} train families and '
                         f'{settings["min_val_images"]} val image(s); lower min_train_families or install more themes.')
    kept.sort(key=lambda c: (-c['train_families'], -len(c['val']), c['name']))
    kept = sorted(kept[:settings['max_classes']], key=lambda c: c['name'])
    rates = [dict(families=[a, b], near_copies=c, shared_classes=n, rate=round(c / n, 3))
             for (a, b), (c, n) in rates.items() if n >= _COPY_MIN and c > 0]
    return dict(classes=kept, pixels=pixels, family=family, order=order, split_of=split_of, joins=joins,
                left_out=left_out, copy_rates=sorted(rates, key=lambda r: -r['rate']))


def _safe(name):
    return re.sub(r'[^A-Za-z0-9._+-]', '_', name)


def _manifest(index, plan, settings, digest):
    family, split_of = plan['family'], plan['split_of']
    classes, used = [], set()
    for cls in plan['classes']:
        images = [dict(split=s, theme=t, family=family[t], **cls['drawings'][t]) for s in ('train', 'val')
                  for t in cls[s]]
        used.update(t for s in ('train', 'val') for t in cls[s])
        contexts = [d['context'] for d in cls['drawings'].values() if d['context']]
        classes.append(dict(name=cls['name'], folder=_safe(cls['name']), aliases=cls['aliases'],
                            context=max(sorted(set(contexts)), key=contexts.count) if contexts else '',
                            train=len(cls['train']), val=len(cls['val']), train_families=cls['train_families'],
                            images=images))
    families = {}
    for theme in plan['order']:
        entry = families.setdefault(family[theme], dict(name=family[theme], split=split_of[family[theme]],
                                                        themes=[], used_themes=[], packages={}))
        entry['themes'].append(theme)
        if theme in used:
            entry['used_themes'].append(theme)
        if theme in index['packages']:
            p = index['packages'][theme]
            entry['packages'][p['package']] = p['version']
    for entry in families.values():
        entry['images'] = {s: sum(i['family'] == entry['name'] and i['split'] == s
                                  for c in classes for i in c['images']) for s in ('train', 'val')}
    counts = {s: {c['name']: c[s] for c in classes} for s in ('train', 'val')}
    return dict(
        kind=_KIND, version=_VERSION, digest=digest, settings=settings, renderer=_renderer(),
        render=dict(canvas=settings['size'], background=list(settings['background']),
                    lookup='spec exact size match, else vector, else smallest bitmap >= size, else largest',
                    near_copy=dict(silhouette=_SILHOUETTE, shading=_SHADING),
                    family_copy_rate=dict(rate=_COPY_RATE, min_shared_classes=_COPY_MIN)),
        val_families=sorted(f for f, s in split_of.items() if s == 'val'),
        families=sorted(families.values(), key=lambda f: f['name']),
        joins=[dict(themes=[a, b], why=why) for a, b, why in plan['joins']],
        family_copy_rates=plan['copy_rates'], classes=classes, left_out=plan['left_out'], counts=counts)


def _swap_in(tmp_dir, out_dir):
    """ Replace out_dir by the finished tmp_dir (a sibling), restoring the old one if that fails. """
    parent = os.path.dirname(out_dir)
    old_dir = None
    try:
        if os.path.exists(out_dir):
            old_dir = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.old.', dir=parent)
            os.replace(out_dir, os.path.join(old_dir, 'data'))
        os.replace(tmp_dir, out_dir)
    except BaseException:
        if old_dir is not None and not os.path.exists(out_dir):
            os.replace(os.path.join(old_dir, 'data'), out_dir)
        raise
    finally:
        if old_dir is not None and os.path.exists(out_dir):
            shutil.rmtree(old_dir, ignore_errors=True)


def _write_tree(out_dir, manifest, pixels, background):
    """ Write the images and manifest beside out_dir, then swap the folder in: it appears complete or not at all. """
    from PIL import Image
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.', dir=parent)
    try:
        for cls in manifest['classes']:
            for image in cls['images']:
                folder = os.path.join(tmp_dir, image['split'], cls['folder'])
                os.makedirs(folder, exist_ok=True)
                rgb = _composite(pixels[image['file']], background)
                Image.fromarray(rgb).save(os.path.join(folder, _safe(image['theme']) + '.png'))
        with open(os.path.join(tmp_dir, _MANIFEST), 'w', encoding='utf-8') as f:
            json.dump(manifest, f, indent=1)
        os.chmod(tmp_dir, 0o755)  # mkdtemp makes it owner-only
        _swap_in(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def read_icon_dataset(out_dir):
    """ The data set `build_icon_dataset` wrote in `out_dir` (as it returns it, `reused` True), or None; reads only. """
    manifest = _read_manifest(os.path.abspath(out_dir), _KIND)
    return None if manifest is None else _result(os.path.abspath(out_dir), manifest, reused=True)


def _result(out_dir, manifest, reused):
    return dict(
        root=out_dir, train=os.path.join(out_dir, 'train'), val=os.path.join(out_dir, 'val'),
        num_classes=len(manifest['classes']), counts=manifest['counts'], manifest=manifest, reused=reused)


def _settings(roots, size, background, val_families, min_train_families, min_val_images, val_per_family,
              train_per_class, val_per_class, max_classes, seed):
    if size < 16:
        raise ValueError(f'size must be at least 16 pixels (the near-copy test works at 16x16), got {size}.')
    if len(background) != 3 or not all(0 <= int(c) <= 255 for c in background):
        raise ValueError(f'background must be three values in 0..255, got {background!r}.')
    count = isinstance(val_families, int) and not isinstance(val_families, bool) and val_families >= 1
    if not count and (isinstance(val_families, str) or not val_families):
        raise ValueError(f'val_families must be a count >= 1 or a list of family names, got {val_families!r}.')
    if min_train_families < 1 or min_val_images < 1:
        raise ValueError('min_train_families and min_val_images must be >= 1: timm needs every class in both splits.')
    for name, cap in (('val_per_family', val_per_family), ('train_per_class', train_per_class),
                      ('val_per_class', val_per_class), ('max_classes', max_classes)):
        if cap is not None and cap < 1:
            raise ValueError(f'{name} must be >= 1 or None (no cap), got {cap}.')
    return dict(
        roots=[os.path.abspath(r) for r in roots], size=int(size), background=[int(c) for c in background],
        val_families=val_families if count else sorted(val_families), min_train_families=int(min_train_families),
        min_val_images=int(min_val_images), val_per_family=val_per_family, train_per_class=train_per_class,
        val_per_class=val_per_class, max_classes=max_classes, seed=int(seed))


def build_icon_dataset(out_dir, roots=('/usr/share/icons',), size=64, background=(240, 240, 240),
                       val_families=DEFAULT_VAL_FAMILIES, min_train_families=8, min_val_images=1, val_per_family=1,
                       train_per_class=None, val_per_class=None, max_classes=None, seed=0):
    """ Render every class icon of every theme that draws it and write a train/val ImageFolder.

    Deterministic in the themes' files, the package versions and the arguments. A folder built from
    the same inputs (digest of the arguments, renderer versions, packages and the sha256 of every
    candidate file) is reused without rendering; other inputs rebuild it, complete or not at all.

    Args:
        out_dir: destination; must not exist, be empty, or hold a data set written by this function.
        roots: folders holding icon themes (``<root>/<theme>/index.theme``).
        size: images are size x size pixels.
        background: RGB the icons are composited on: a light grey, like the panels and windows the
            themes are drawn for (their dark variants come second in a family).
        val_families: held-out families: names of families or of themes in them, or a count drawn with ``seed``.
        min_train_families: a class needs distinct drawings from this many train families.
        min_val_images: and this many val images.
        val_per_family: most val images per class from one family (1: each an independent design); None for all.
        train_per_class, val_per_class: most images per class, taken one family at a time; None for all.
        max_classes: keep the classes drawn by the most train families; None for all.
        seed: seed of a drawn split and of the caps' family order.

    Returns:
        dict(root, train, val, num_classes, counts={'train': {class: n}, 'val': {...}},
        manifest (the manifest.json content), reused)
    """
    settings = _settings(roots, size, background, val_families, min_train_families, min_val_images, val_per_family,
                         train_per_class, val_per_class, max_classes, seed)
    index = _index(settings)
    digest = _digest(index, settings)
    out_dir = os.path.abspath(out_dir)
    existing = _read_manifest(out_dir, _KIND)
    if existing is not None and existing.get('digest') == digest:
        return _result(out_dir, existing, reused=True)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or (os.listdir(out_dir) and existing is None)):
        raise ValueError(f'{out_dir} exists and does not hold an icon data set; remove it or pick another directory.')
    plan = _plan(index, settings)
    manifest = _manifest(index, plan, settings, digest)
    _write_tree(out_dir, manifest, plan['pixels'], settings['background'])
    return _result(out_dir, manifest, reused=False)


def _val_families(text):
    return int(text) if text.isdigit() else [v for v in text.split(',') if v]


def _cap_arg(text):
    return int(text) or None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.icons', description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('out', help='output directory (train/, val/ and manifest.json)')
    parser.add_argument('--roots', action='append', metavar='DIR', help='icon theme folder, repeatable '
                        '(default: /usr/share/icons)')
    parser.add_argument('--size', type=int, default=64, help='image size in pixels')
    parser.add_argument('--background', default='f0f0f0', help='RGB hex the icons are composited on')
    parser.add_argument('--val-families', type=_val_families, default=list(DEFAULT_VAL_FAMILIES),
                        help=f'held-out families, comma-separated names or a count (default: '
                             f'{",".join(DEFAULT_VAL_FAMILIES)})')
    parser.add_argument('--min-train-families', type=int, default=8, help='drop classes drawn by fewer train families')
    parser.add_argument('--val-per-family', type=_cap_arg, default=1,
                        help='most val images per class and family; 0 for all')
    parser.add_argument('--train-per-class', type=_cap_arg, default=None, help='most train images per class; 0 for all')
    parser.add_argument('--val-per-class', type=_cap_arg, default=None, help='most val images per class; 0 for all')
    parser.add_argument('--max-classes', type=_cap_arg, default=None, help='keep the most drawn classes; 0 for all')
    parser.add_argument('--seed', type=int, default=0, help='seed of a drawn split and of the caps')
    args = parser.parse_args(argv)
    try:
        background = tuple(bytes.fromhex(args.background))
        folder = build_icon_dataset(
            args.out, roots=args.roots or ('/usr/share/icons',), size=args.size, background=background,
            val_families=args.val_families, min_train_families=args.min_train_families,
            val_per_family=args.val_per_family, train_per_class=args.train_per_class,
            val_per_class=args.val_per_class, max_classes=args.max_classes, seed=args.seed)
    except ValueError as e:  # one line saying what is missing, not the long usage parser.error prints
        print(f'{parser.prog}: {e}', file=sys.stderr)
        raise SystemExit(2)
    manifest = folder['manifest']
    n_train, n_val = (sum(folder['counts'][s].values()) for s in ('train', 'val'))
    used = [f for f in manifest['families'] if f['used_themes']]
    verb = 'reused' if folder['reused'] else 'wrote'
    print(f'{verb} {folder["root"]}: {folder["num_classes"]} classes, {n_train} train / {n_val} val images from '
          f'{sum(len(f["used_themes"]) for f in used)} themes in {len(used)} families '
          f'(val: {", ".join(manifest["val_families"])})')


if __name__ == '__main__':
    main()
