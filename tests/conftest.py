import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same global RNG state (numpy drives timm's Mixup, torch the intra weights)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope='session')
def image_folder(tmp_path_factory):
    """A tiny ImageFolder of real PNG files: 4 classes, 5 images each, 40x48 px."""
    from PIL import Image
    root = tmp_path_factory.mktemp('images')
    rng = np.random.default_rng(0)
    for c in range(4):
        (root / f'class{c}').mkdir()
        for i in range(5):
            pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f'class{c}' / f'{i}.png')
    return root
