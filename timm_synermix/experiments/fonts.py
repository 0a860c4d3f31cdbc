""" Characters rendered from the font files on this machine, written as a many-class timm ImageFolder.

The Chars74K-Fnt idea: one image of each character per font file, here digits, Latin, Greek and
Cyrillic letters (124 classes; homoglyphs are one class, see ``HOMOGLYPHS``). SynerMix needs classes
with two or more images in a batch, which a 100+ class data set with a few thousand images gives
without any download.

* Rendering: each glyph at a fixed em size and baseline on a ``size`` x ``size`` canvas, its advance
  box centred, black on white, saved as RGB PNG. Glyphs are not cropped or rescaled, so case shows
  in size and baseline as in print (``o`` is smaller and lower than ``O``).
* Fonts: ``.ttf``/``.otf`` files under ``fonts_dirs`` (default: ``/usr/share/fonts``, the TeX
  ``opentype`` tree and matplotlib's bundled fonts). A font is used only if it has all 62 digits and
  Latin letters under their standard glyph names (symbol, dingbat and last-resort fonts fail this;
  without fontTools only the last-resort kind is caught); a character it lacks gives no image.
  Identical files (sha256) and one font installed twice (PostScript name) count once. ``.ttc``
  collections are not read; a variable font gives its default instance.
* Split: by design group, never by image: fonts of one family (name table), and families whose
  glyphs are near copies of each other (URW's Nimbus Sans, TeX Gyre Heros, FreeSans ...), are all
  on one side. The split is a seeded shuffle of the groups.

Output: ``OUT/train/<class>/<font>.png``, ``OUT/val/<class>/<font>.png`` and ``OUT/manifest.json``
(classes, fonts with family, sha256 and split, counts, render settings). Every class is in both
splits, so timm gives the same class indices to both folders.

Example:
    python -m timm_synermix.experiments.fonts --out data/fonts
    python -m timm_synermix.experiments.fonts --out data/fonts-mpl --fonts /path/to/fonts --size 48
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import tempfile
import unicodedata

import numpy as np

__all__ = [
    'CLASSES', 'HOMOGLYPHS', 'SCRIPTS', 'default_font_dirs', 'find_font_files', 'build_font_dataset',
    'read_font_dataset', 'dropped_note', 'main']

# The classes. A Greek or Cyrillic letter that Unicode's confusables.txt
# (https://www.unicode.org/Public/security/latest/confusables.txt) maps to a Latin letter or digit
# has the same shape, so it would be a second label for one image: it is left out and the Latin
# class kept. A Cyrillic letter confusable with a kept Greek one is left out the same way. Case pairs
# of one shape (o/O, ш/Ш) stay apart: the fixed em box renders them at different sizes. The 62 Latin
# classes are Chars74K's, O/0 and I/l/1 included: their shapes differ in most fonts.
_LATIN = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
_GREEK = 'ΓΔΘΛΞΠΣΦΨΩ' 'βδεζηθκλμξπςτφχψω'
_CYRILLIC = 'БДЖИЙЛЦЧШЩЪЫЭЮЯ' 'вджзийлмнтцчшщъыьэюя'
# The letters of U+0391..U+03C9 and U+0410..U+044F left out, with the kept class each duplicates.
HOMOGLYPHS = {
    'Α': 'A', 'Β': 'B', 'Ε': 'E', 'Ζ': 'Z', 'Η': 'H', 'Ι': 'I', 'Κ': 'K', 'Μ': 'M', 'Ν': 'N',
    'Ο': 'O', 'Ρ': 'P', 'Τ': 'T', 'Υ': 'Y', 'Χ': 'X',
    'α': 'a', 'γ': 'y', 'ι': 'i', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'σ': 'o', 'υ': 'u',
    'А': 'A', 'В': 'B', 'Г': 'Γ', 'Е': 'E', 'З': '3', 'К': 'K', 'М': 'M', 'Н': 'H', 'О': 'O',
    'П': 'Π', 'Р': 'P', 'С': 'C', 'Т': 'T', 'У': 'Y', 'Ф': 'Φ', 'Х': 'X', 'Ь': 'b',
    'а': 'a', 'б': '6', 'г': 'r', 'е': 'e', 'к': 'κ', 'о': 'o', 'п': 'π', 'р': 'p', 'с': 'c',
    'у': 'y', 'ф': 'φ', 'х': 'x',
}
SCRIPTS = ('latin', 'greek', 'cyrillic')


def _class_name(ch):
    # the code point keeps names unique on case-insensitive file systems; the rest is for people
    words = unicodedata.name(ch).lower().replace(' letter', '').split()
    return f'U{ord(ch):04X}_' + '_'.join(words)


CLASSES = tuple(
    dict(name=_class_name(ch), char=ch, codepoint=f'U+{ord(ch):04X}', script=script)
    for script, chars in zip(SCRIPTS, (_LATIN, _GREEK, _CYRILLIC)) for ch in chars)

_BASIC = _LATIN  # a font must have all of these to be used at all
_MIN_DISTINCT = 56  # of the 62: sans fonts may draw I and l, or O and 0, alike
# Ink overlap (Ruzicka similarity of the 2x2-pooled basic glyphs, 0..1) above which two fonts of
# different families are one design for the split. Measured on Debian's fonts: clones such as
# Nimbus Sans / TeX Gyre Heros / FreeSans or Noto Sans / Open Sans score 0.80..0.995, the closest
# distinct designs (Roboto / Noto Sans, Lato / Open Sans) at most 0.78.
_CLONE_SIMILARITY = 0.8
# Computer Modern's roman in its bold and italic cuts, which the name table calls separate families.
_FAMILY_ALIASES = {'cmb10': 'cmr10', 'cmti10': 'cmr10', 'cmbx10': 'cmr10', 'cmsl10': 'cmr10'}
_STYLE_WORDS = re.compile(
    r'\b(condensed|cond|cn|narrow|semicondensed|extended|display|hairline|thin|extralight|ultralight|'
    r'light|book|regular|medium|semibold|demibold|demi|bold|extrabold|ultrabold|heavy|black|'
    r'italic|oblique)\b')
_MANIFEST = 'manifest.json'
_VERSION = 1


def default_font_dirs():
    """ Font folders searched when none are given: the system fonts (Debian ``fonts-*`` packages),
    TeX's OpenType fonts (``fonts-texgyre``) and matplotlib's bundled fonts, those that exist. """
    dirs = ['/usr/share/fonts', '/usr/share/texmf/fonts/opentype']
    try:
        import matplotlib
        dirs.append(os.path.join(os.path.dirname(matplotlib.__file__), 'mpl-data', 'fonts', 'ttf'))
    except ImportError:
        pass
    return [d for d in dirs if os.path.isdir(d)]


def find_font_files(fonts_dirs):
    """ All ``.ttf`` and ``.otf`` files under the given folders, sorted by path. """
    found = set()
    for root in fonts_dirs:
        for dirpath, _, files in os.walk(root):
            found.update(
                os.path.abspath(os.path.join(dirpath, f)) for f in files if f.lower().endswith(('.ttf', '.otf')))
    return sorted(found)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def _read_names(path):
    """ (family, style, PostScript name, {code point: glyph name} or None) of a font file. """
    try:
        from fontTools.ttLib import TTFont
    except ImportError:
        from PIL import ImageFont
        family, style = ImageFont.truetype(path, 16).getname()
        return family, style, f'{family}-{style}', None
    with TTFont(path, lazy=True) as tt:
        name = tt['name']
        # ID 16/17 (typographic family) keep Lato Black or Roboto Light in the family of their regular
        family = name.getDebugName(16) or name.getDebugName(1)
        style = name.getDebugName(17) or name.getDebugName(2)
        return family, style, name.getDebugName(6) or f'{family}-{style}', dict(tt.getBestCmap() or {})


def _symbol_glyph(cmap):
    """ The first basic character whose glyph is named as another character, with that name, or None.

    Symbol fonts put other glyphs on the Latin code points: 'Alpha' on A, the dingbat 'a10' on 0. """
    from fontTools.agl import toUnicode
    for ch in _BASIC:
        glyph = cmap[ord(ch)]
        if toUnicode(glyph) != ch and not re.fullmatch(r'(glyph|g|cid|index)\d+', glyph):
            return ch, glyph
    return None


def _layout(size):
    """ Em size and baseline row: room for accents above the cap height and for descenders. """
    return int(round(size * 0.72)), int(round(size * 0.75))


def _render_font(path, chars, size):
    """ Ink images (uint8 [len(chars), size, size], 255 = ink) of chars and of the font's .notdef. """
    from PIL import Image, ImageDraw, ImageFont
    em, baseline = _layout(size)
    font = ImageFont.truetype(path, em, layout_engine=ImageFont.Layout.BASIC)
    out = np.zeros((len(chars) + 1, size, size), np.uint8)
    for i, ch in enumerate(list(chars) + [chr(0x10FFFD)]):  # a private-use code point no font maps: .notdef
        img = Image.new('L', (size, size), 0)
        x = (size - font.getlength(ch)) / 2
        ImageDraw.Draw(img).text((x, baseline), ch, font=font, fill=255, anchor='ls')
        out[i] = np.asarray(img)
    return out[:-1], out[-1]


def _coverage(chars, cmap, images, notdef):
    """ Which chars the font has: mapped (when the cmap is known), inked and not the .notdef box. """
    flat = images.reshape(len(chars), -1)
    has = (flat.max(1) > 0) & ~(flat == notdef.reshape(1, -1)).all(1)
    if cmap is not None:
        has &= np.array([ord(ch) in cmap for ch in chars])
    return has


def _cmap_rejection(cmap):
    """ Why a font's character map rules it out (a sentence), or None: it must map every digit and
    Latin letter, each to a glyph named after it. """
    missing = ''.join(ch for ch in _BASIC if ord(ch) not in cmap)
    if missing:
        return f'lacks {len(missing)} of the {len(_BASIC)} digits and Latin letters ({missing[:10]})'
    symbol = _symbol_glyph(cmap)
    if symbol is not None:
        return f'symbol font: its glyph on {symbol[0]!r} is named {symbol[1]!r}'
    return None


def _render_rejection(chars, images, has):
    """ Why a font's renderings rule it out, or None: every digit and Latin letter must be drawn, and
    nearly all differently (a last-resort font draws one box for all). """
    basic = np.array([ch in _BASIC for ch in chars])
    if not has[basic].all():
        blank = ''.join(ch for ch, b, h in zip(chars, basic, has) if b and not h)
        return f'draws nothing or its .notdef box for {blank[:10]!r}'
    distinct = len({images[i].tobytes() for i in np.flatnonzero(basic)})
    if distinct < _MIN_DISTINCT:
        return f'draws only {distinct} distinct glyphs for the {len(_BASIC)} digits and Latin letters'
    return None


def _inspect(path, chars, size):
    """ A font's record (family, images, coverage) or the reason it is not used. """
    try:
        family, style, psname, cmap = _read_names(path)
        reason = None if cmap is None else _cmap_rejection(cmap)
        if reason is not None:  # most of Noto's script fonts: no need to render them
            return None, reason
        images, notdef = _render_font(path, chars, size)
    except Exception as e:  # a broken or unsupported file is skipped, not fatal
        return None, f'unreadable ({type(e).__name__}: {e})'
    has = _coverage(chars, cmap, images, notdef)
    reason = _render_rejection(chars, images, has)
    if reason is not None:
        return None, reason
    return dict(file=path, family=family or os.path.basename(path), style=style, psname=psname,
                images=images, has=has), None


def _design_similarity(fonts, chars, size):
    """ Pairwise ink overlap sum(min) / sum(max) of the fonts' basic glyphs, 2x2-pooled so the
    hinting differences between a design and its clone fade. """
    idx = [i for i, ch in enumerate(chars) if ch in _BASIC]
    half = size // 2
    imgs = np.stack([f['images'][idx, :2 * half, :2 * half] for f in fonts]).astype(np.float32) / 255.
    feats = imgs.reshape(len(fonts), len(idx), half, 2, half, 2).mean((3, 5)).reshape(len(fonts), -1)
    sim = np.empty((len(fonts), len(fonts)))
    for i, f in enumerate(feats):  # one row at a time keeps memory at fonts x features
        sim[i] = np.minimum(f, feats).sum(1) / np.maximum(np.maximum(f, feats).sum(1), 1e-9)
    return sim


def _family_key(family):
    key = re.sub(r'[^a-z0-9]', '', _STYLE_WORDS.sub('', family.lower())) or family.lower()
    return _FAMILY_ALIASES.get(key, key)


def _split_groups(fonts, chars, size):
    """ Split group of each font: its family without width and weight words (Roboto Condensed Light
    is Roboto), merged with every family whose glyphs are near copies of it. """
    keys = [_family_key(f['family']) for f in fonts]
    parent = {k: k for k in keys}

    def root(k):
        while parent[k] != k:
            k = parent[k]
        return k

    sim = _design_similarity(fonts, chars, size)
    for i, j in zip(*np.nonzero(np.triu(sim >= _CLONE_SIMILARITY, 1))):
        a, b = sorted((root(keys[i]), root(keys[j])))
        parent[b] = a  # the alphabetically first family names the group
    return [root(k) for k in keys]


def _collect_fonts(files, hashes, chars, size):
    """ Usable fonts (one per file content and PostScript name) and (file, reason) of the others. """
    fonts, skipped, by_hash, by_psname = [], [], {}, {}
    for path in files:
        sha = hashes[path]
        if sha in by_hash:
            skipped.append(dict(file=path, reason=f'same file as {by_hash[sha]}'))
            continue
        by_hash[sha] = path
        font, reason = _inspect(path, chars, size)
        if font is not None and font['psname'] in by_psname:
            # one font shipped twice (Debian's DejaVu and matplotlib's copy): the first path wins
            font, reason = None, f'same font ({font["psname"]}) as {by_psname[font["psname"]]}'
        if font is None:
            skipped.append(dict(file=path, reason=reason))
            continue
        by_psname[font['psname']] = path
        fonts.append(dict(font, sha256=sha))
    return fonts, skipped


def _round_robin(fonts, groups, rng):
    """ Set each font's ``rank``: its groups' fonts shuffled, then taken one group at a time, so a
    per-class cap takes as many designs as it can. """
    queues = [[f for f in fonts if f['group'] == g] for g in groups]
    queues = [[q[i] for i in rng.permutation(len(q))] for q in queues]
    rank = 0
    while any(queues):
        for q in queues:
            if q:
                q.pop(0)['rank'] = rank
                rank += 1


def _assign_splits(fonts, val_families, seed):
    """ Put whole groups in val (a seeded shuffle of the groups); sets each font's ``split`` and ``rank``. """
    groups = sorted({f['group'] for f in fonts})
    if len(groups) < 2:
        raise ValueError(
            f'Fonts of one design group only ({groups[0]}); a split by family needs two or more. '
            f'Add fonts (apt-get install fonts-dejavu-core fonts-liberation2 ...) or pass more --fonts DIR.')
    n_val = int(round(val_families * len(groups))) if isinstance(val_families, float) else val_families
    n_val = min(max(n_val, 1), len(groups) - 1)
    rng = np.random.default_rng(seed)
    order = [groups[i] for i in rng.permutation(len(groups))]
    for f in fonts:
        f['split'] = 'val' if f['group'] in order[:n_val] else 'train'
    _round_robin(fonts, order[n_val:], rng)
    _round_robin(fonts, order[:n_val], rng)


def _choose_images(fonts, classes, caps, mins):
    """ (class index, font index, split) of every image, and the classes kept.

    Each class takes the first ``caps[split]`` fonts (by rank) that have it, and is kept if it has
    ``mins[split]`` in both splits. """
    has = np.stack([f['has'] for f in fonts])  # [fonts, chars]
    ranked = {s: sorted((i for i, f in enumerate(fonts) if f['split'] == s), key=lambda i: fonts[i]['rank'])
              for s in ('train', 'val')}
    picks, kept = [], []
    for c in classes:
        chosen = {s: [i for i in ranked[s] if has[i, c]][:caps[s]] for s in ranked}
        if all(len(chosen[s]) >= mins[s] for s in chosen):
            kept.append(c)
            picks += [(c, i, s) for s in ('train', 'val') for i in chosen[s]]
    return picks, kept


def _no_fonts_message(dirs):
    return (
        f'No usable font (a .ttf/.otf file with all digits and Latin letters) under {", ".join(dirs) or "no folder"}. '
        f'Install the Debian font packages (apt-get install fonts-dejavu-core fonts-noto-core fonts-liberation2 ...) '
        f'or pass --fonts DIR (fonts_dirs=[DIR]) with such fonts.')


def _renderer():
    """ Library versions that change the pixels or the font checks, part of the inputs' digest. """
    import PIL
    from PIL import features
    try:
        import fontTools
        fonttools = fontTools.version
    except ImportError:
        fonttools = None
    return dict(pillow=PIL.__version__, freetype=features.version('freetype2'), fonttools=fonttools)


def _stems(fonts):
    """ File name of each font's images: the font file's name, made unique with the start of its sha256. """
    stems = [re.sub(r'[^A-Za-z0-9._-]', '_', os.path.splitext(os.path.basename(f['file']))[0]) for f in fonts]
    lowered = [s.lower() for s in stems]  # case-insensitive file systems
    return [s if lowered.count(s.lower()) == 1 else f'{s}-{f["sha256"][:8]}' for s, f in zip(stems, fonts)]


def _plan(files, hashes, settings):
    """ Render, check, group and split the fonts; returns (fonts, picks, kept classes, skipped). """
    chars = [c['char'] for c in CLASSES]
    fonts, skipped = _collect_fonts(files, hashes, chars, settings['size'])
    if not fonts:
        raise ValueError(_no_fonts_message(settings['fonts_dirs']))
    for font, group in zip(fonts, _split_groups(fonts, chars, settings['size'])):
        font['group'] = group
    _assign_splits(fonts, settings['val_families'], settings['seed'])
    classes = [i for i, c in enumerate(CLASSES) if c['script'] in settings['scripts']]
    picks, kept = _choose_images(
        fonts, classes, dict(train=settings['train_fonts_per_class'], val=settings['val_fonts_per_class']),
        dict(train=settings['min_train_fonts'], val=settings['min_val_fonts']))
    if not kept:
        raise ValueError(
            f'No class has {settings["min_train_fonts"]} train and {settings["min_val_fonts"]} val fonts '
            f'({len(fonts)} usable fonts); lower min_train_fonts or add fonts (--fonts DIR).')
    for font, stem in zip(fonts, _stems(fonts)):
        font['stem'] = stem
    return fonts, picks, kept, skipped


def _manifest(fonts, picks, kept, skipped, settings, inputs, digest):
    counts = {s: {CLASSES[c]['name']: 0 for c in kept} for s in ('train', 'val')}
    images = [0] * len(fonts)
    for c, i, split in picks:
        counts[split][CLASSES[c]['name']] += 1
        images[i] += 1
    em, baseline = _layout(settings['size'])
    return dict(
        kind='timm_synermix.fonts', version=_VERSION, digest=digest, settings=settings,
        renderer=inputs['renderer'],
        render=dict(canvas=settings['size'], em=em, baseline_row=baseline, horizontal='advance box centred',
                    colors='black glyph on white, RGB PNG'),
        classes=[dict(CLASSES[c], train=counts['train'][CLASSES[c]['name']],
                      val=counts['val'][CLASSES[c]['name']]) for c in kept],
        val_groups=sorted({f['group'] for f in fonts if f['split'] == 'val'}),
        fonts=[dict(file=f['file'], family=f['family'], style=f['style'], group=f['group'], split=f['split'],
                    sha256=f['sha256'], stem=f['stem'], images=n) for f, n in zip(fonts, images)],
        skipped=skipped, counts=counts)


def _write_tree(out_dir, fonts, picks, manifest):
    """ Write images and manifest beside out_dir, then swap the folder in. """
    from PIL import Image
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.', dir=parent)
    old_dir = None
    try:
        for c, i, split in picks:
            class_dir = os.path.join(tmp_dir, split, CLASSES[c]['name'])
            os.makedirs(class_dir, exist_ok=True)
            img = Image.fromarray(255 - fonts[i]['images'][c])  # ink -> black on white
            img.convert('RGB').save(os.path.join(class_dir, fonts[i]['stem'] + '.png'))
        with open(os.path.join(tmp_dir, _MANIFEST), 'w', encoding='utf-8') as f:
            json.dump(manifest, f, indent=1, ensure_ascii=False)
        os.chmod(tmp_dir, 0o755)  # mkdtemp makes it owner-only
        if os.path.exists(out_dir):
            old_dir = tempfile.mkdtemp(prefix=f'.{os.path.basename(out_dir)}.old.', dir=parent)
            os.replace(out_dir, os.path.join(old_dir, 'data'))
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if old_dir is not None and not os.path.exists(out_dir):
            os.replace(os.path.join(old_dir, 'data'), out_dir)
        raise
    finally:
        if old_dir is not None and os.path.exists(out_dir):  # the new or the restored folder is in place
            shutil.rmtree(old_dir, ignore_errors=True)


def _read_manifest(out_dir, kind='timm_synermix.fonts'):
    """The manifest.json of a data set of this `kind` (the icons' too), or None."""
    try:
        with open(os.path.join(out_dir, _MANIFEST), encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get('kind') == kind else None


def _result(out_dir, manifest, reused):
    return dict(
        root=out_dir, train=os.path.join(out_dir, 'train'), val=os.path.join(out_dir, 'val'),
        num_classes=len(manifest['classes']), counts=manifest['counts'], manifest=manifest, reused=reused)


def _settings(fonts_dirs, size, val_families, train_fonts_per_class, val_fonts_per_class, scripts, seed,
              min_train_fonts, min_val_fonts):
    if size < 8:
        raise ValueError(f'size must be at least 8 pixels, got {size}.')
    if isinstance(scripts, str) or not scripts or set(scripts) - set(SCRIPTS):
        raise ValueError(f'scripts must be a list of some of {", ".join(SCRIPTS)}, got {scripts!r}.')
    scripts = [s for s in SCRIPTS if s in scripts]  # canonical order for the digest
    fraction = isinstance(val_families, float) and 0. < val_families < 1.
    count = isinstance(val_families, int) and not isinstance(val_families, bool) and val_families >= 1
    if not (fraction or count):
        raise ValueError(f'val_families must be a fraction in (0, 1) or a count >= 1, got {val_families!r}.')
    for name, cap in (('train_fonts_per_class', train_fonts_per_class), ('val_fonts_per_class', val_fonts_per_class)):
        if cap is not None and cap < 1:
            raise ValueError(f'{name} must be >= 1 or None (all), got {cap}.')
    if min_train_fonts < 1 or min_val_fonts < 1:
        raise ValueError('min_train_fonts and min_val_fonts must be >= 1: timm needs every class in both splits.')
    return dict(
        fonts_dirs=[os.path.abspath(d) for d in fonts_dirs], size=int(size), val_families=val_families,
        train_fonts_per_class=train_fonts_per_class, val_fonts_per_class=val_fonts_per_class,
        min_train_fonts=int(min_train_fonts), min_val_fonts=int(min_val_fonts), scripts=scripts, seed=int(seed),
        clone_similarity=_CLONE_SIMILARITY)


def build_font_dataset(out_dir, fonts_dirs=None, size=32, val_families=0.2, train_fonts_per_class=40,
                       val_fonts_per_class=10, scripts=SCRIPTS, seed=0, min_train_fonts=10, min_val_fonts=1):
    """ Render every class character in every usable font and write a train/val ImageFolder.

    Deterministic in the font files and arguments. A folder built from the same inputs (digest of
    the arguments, library versions, font paths and their sha256) is reused; other inputs rebuild
    it. The folder appears complete or not at all (written beside it, then swapped in).

    Args:
        out_dir: destination; must not exist, be empty, or hold a data set written by this function.
        fonts_dirs: folders searched for .ttf/.otf files (default: ``default_font_dirs()``).
        size: images are size x size pixels.
        val_families: design groups put in val: a fraction in (0, 1) of them, or a count.
        train_fonts_per_class: most train images per class, taken round-robin over the groups; None for all.
        val_fonts_per_class: the same for val.
        scripts: any of 'latin' (digits and letters), 'greek', 'cyrillic'.
        seed: seed of the group split and of the train font order.
        min_train_fonts: classes with fewer train fonts are dropped.
        min_val_fonts: classes with fewer val fonts are dropped (at least 1: timm must see every
            class folder in both splits to give them the same indices).

    Returns:
        dict(root, train, val, num_classes, counts={'train': {class: n}, 'val': {...}},
        manifest (the manifest.json content), reused)

    Example:
        >>> folder = build_font_dataset('data/fonts')
        >>> dataset = timm.data.ImageDataset(folder['train'])
    """
    dirs = default_font_dirs() if fonts_dirs is None else [str(d) for d in fonts_dirs]
    settings = _settings(dirs, size, val_families, train_fonts_per_class, val_fonts_per_class, scripts, seed,
                         min_train_fonts, min_val_fonts)
    files = find_font_files(settings['fonts_dirs'])
    if not files:
        raise ValueError(_no_fonts_message(settings['fonts_dirs']))
    hashes = {path: _sha256(path) for path in files}
    inputs = dict(version=_VERSION, settings=settings, renderer=_renderer(), files=[[p, hashes[p]] for p in files])
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()

    out_dir = os.path.abspath(out_dir)
    existing = _read_manifest(out_dir)
    if existing is not None and existing.get('digest') == digest:
        return _result(out_dir, existing, reused=True)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or (os.listdir(out_dir) and existing is None)):
        raise ValueError(
            f'{out_dir} exists and does not hold a font data set; remove it or pick another output directory.')

    fonts, picks, kept, skipped = _plan(files, hashes, settings)
    manifest = _manifest(fonts, picks, kept, skipped, settings, inputs, digest)
    _write_tree(out_dir, fonts, picks, manifest)
    return _result(out_dir, manifest, reused=False)


def dropped_note(manifest):
    """One line naming, per script, the classes of the requested scripts that had too few fonts, or ''."""
    settings, kept = manifest['settings'], {c['name'] for c in manifest['classes']}
    asked = [c for c in CLASSES if c['script'] in settings['scripts']]
    dropped = {}
    for c in asked:
        if c['name'] not in kept:
            dropped.setdefault(c['script'], []).append(c['name'])
    if not dropped:
        return ''
    per_script = ', '.join(f'{len(names)} of {sum(c["script"] == s for c in asked)} {s}' for s, names in dropped.items())
    return (f'dropped {per_script} classes: fewer than {settings["min_train_fonts"]} train or '
            f'{settings["min_val_fonts"]} val fonts draw them (add fonts with --fonts DIR, or lower --min-train-fonts)')


def read_font_dataset(out_dir):
    """ The data set `build_font_dataset` wrote in `out_dir` (as it returns it, `reused` True), or None; reads only. """
    manifest = _read_manifest(os.path.abspath(out_dir))
    return None if manifest is None else _result(os.path.abspath(out_dir), manifest, reused=True)


def _count_or_fraction(text):
    return float(text) if '.' in text else int(text)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m timm_synermix.experiments.fonts', description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--out', required=True, help='output directory (train/, val/ and manifest.json)')
    parser.add_argument('--fonts', action='append', metavar='DIR',
                        help='font folder, repeatable (default: system fonts, TeX OpenType fonts, matplotlib fonts)')
    parser.add_argument('--size', type=int, default=32, help='image size in pixels')
    parser.add_argument('--val-families', type=_count_or_fraction, default=0.2,
                        help='design groups in val: a fraction (0.2) or a count (7)')
    parser.add_argument('--train-fonts', type=int, default=40, help='most train fonts per class; 0 for all')
    parser.add_argument('--val-fonts', type=int, default=10, help='most val fonts per class; 0 for all')
    parser.add_argument('--min-train-fonts', type=int, default=10, help='drop classes with fewer train fonts')
    parser.add_argument('--scripts', default=','.join(SCRIPTS), help='comma-separated: latin,greek,cyrillic')
    parser.add_argument('--seed', type=int, default=0, help='seed of the split')
    args = parser.parse_args(argv)
    try:
        folder = build_font_dataset(
            args.out, fonts_dirs=args.fonts, size=args.size, val_families=args.val_families,
            train_fonts_per_class=args.train_fonts or None, val_fonts_per_class=args.val_fonts or None,
            scripts=tuple(args.scripts.split(',')), seed=args.seed, min_train_fonts=args.min_train_fonts)
    except ValueError as e:
        parser.error(str(e))  # exits 2
    manifest = folder['manifest']
    n_train, n_val = (sum(folder['counts'][s].values()) for s in ('train', 'val'))
    n_used = sum(f['images'] > 0 for f in manifest['fonts'])
    n_groups = len({f['group'] for f in manifest['fonts']})
    verb = 'reused' if folder['reused'] else 'wrote'
    print(f'{verb} {folder["root"]}: {folder["num_classes"]} classes, {n_train} train / {n_val} val images '
          f'from {n_used} of {len(manifest["fonts"])} usable fonts, {n_groups} design groups '
          f'({len(manifest["val_groups"])} in val)')
    if dropped_note(manifest):
        print(f'note: {dropped_note(manifest)}')


if __name__ == '__main__':
    main()
