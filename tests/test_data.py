import json
import os

import numpy as np
import pytest
from PIL import Image

from timm_synermix.experiments.digits import load_source, main, split_indices, write_image_folder


def _listing(root):
    return {
        split: {c: sorted(os.listdir(os.path.join(root, split, c))) for c in sorted(os.listdir(os.path.join(root, split)))}
        for split in ('train', 'val')
    }


def test_write_image_folder_is_stratified_and_decodable(tmp_path):
    folder = write_image_folder('digits', tmp_path / 'digits', val_fraction=0.2, size=16, per_class=10, seed=3)
    assert folder['num_classes'] == 10 and not folder['reused']
    listing = _listing(folder['root'])
    assert list(listing['train']) == [str(c) for c in range(10)] == list(listing['val'])
    assert all(len(f) == 8 for f in listing['train'].values())
    assert all(len(f) == 2 for f in listing['val'].values())
    assert folder['counts'] == {s: {str(c): n for c in range(10)} for s, n in (('train', 8), ('val', 2))}

    images, labels = load_source('digits')
    name = listing['val']['7'][0]
    index = int(name.split('_')[1].split('.')[0])  # files are named after the source index
    assert labels[index] == 7
    img = Image.open(os.path.join(folder['val'], '7', name))
    assert img.mode == 'RGB' and img.size == (16, 16)
    pixels = np.asarray(img)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    expected = np.asarray(Image.fromarray(images[index]).resize((16, 16), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(pixels[..., 0], expected)


def test_digit_sources_load_real_images():
    images, labels = load_source('digits')
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert images.max() == 255 and np.bincount(labels).min() >= 170
    images, labels = load_source('mnist5k')
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.reshape(5000, -1).max(1).min() > 200  # every image has ink


def test_split_is_deterministic_from_seed_and_disjoint():
    labels = np.repeat(np.arange(3), 20)
    train, val = split_indices(labels, val_fraction=0.25, seed=0)
    again = split_indices(labels, val_fraction=0.25, seed=0)
    other = split_indices(labels, val_fraction=0.25, seed=1)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    assert not np.array_equal(val, other[1])
    assert np.intersect1d(train, val).size == 0 and len(train) + len(val) == 60
    assert np.bincount(labels[val]).tolist() == [5, 5, 5]


def test_write_image_folder_reuses_same_folder_and_refuses_other_content(tmp_path):
    out = tmp_path / 'd'
    write_image_folder('digits', out, per_class=4)
    mtime = os.path.getmtime(out / 'manifest.json')
    again = write_image_folder('digits', out, per_class=4)
    assert again['reused'] and os.path.getmtime(out / 'manifest.json') == mtime
    assert json.loads((out / 'manifest.json').read_text())['per_class'] == 4
    with pytest.raises(ValueError, match='remove it or pick another'):
        write_image_folder('digits', out, per_class=5)
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'notes.txt').write_text('x')
    with pytest.raises(ValueError, match='remove it or pick another'):
        write_image_folder('digits', tmp_path / 'other', per_class=4)
    assert sorted(os.listdir(tmp_path)) == ['d', 'other']  # no temporary folder left behind


def test_bad_arguments_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match='valid sources are mnist5k, digits'):
        write_image_folder('cifar', tmp_path / 'x')
    with pytest.raises(ValueError, match=r'per_class <= 1\d\d'):
        write_image_folder('digits', tmp_path / 'x', per_class=1000)
    with pytest.raises(ValueError, match=r'val_fraction must be in \(0, 1\)'):
        write_image_folder('digits', tmp_path / 'x', val_fraction=1.0)
    assert not (tmp_path / 'x').exists()


def test_cli_writes_a_folder_timm_reads(tmp_path, capsys):
    from timm.data import ImageDataset
    main(['--source', 'digits', '--out', str(tmp_path / 'd'), '--per-class', '5', '--size', '12'])
    assert 'wrote' in capsys.readouterr().out
    dataset = ImageDataset(str(tmp_path / 'd' / 'train'))
    assert len(dataset) == 40
    img, target = dataset[0]
    assert img.mode == 'RGB' and img.size == (12, 12) and target == 0
    assert sorted(dataset.reader.class_to_idx) == [str(c) for c in range(10)]
