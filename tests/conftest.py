import os
import random
import sys

import numpy as np
import pytest
import torch

# One intra-op thread, as every train.py subprocess gets (train_helpers.train_env): the in-process runs then compute
# what a subprocess computes, and on a busy 2-core machine (or beside a second xdist worker) more threads spin
# against each other and run several times slower.
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line('markers', "parity: compares a run of our train.py with numbers recorded from timm's own "
                                       "train.py under a portable numeric setting (train_helpers.PORTABLE_NUMERICS)")


# module-scoped fixtures that take seconds to build (a wheel and a venv, the quick study and demo, a trained run) ->
# the xdist group of the tests that use them
SHARED_BUILDS = {'wheel': 'packaging', 'base_install': 'packaging', 'quick_study': 'quick_study',
                 'quick_demo': 'quick_demo', 'trained': 'trained_run'}


@pytest.hookimpl(tryfirst=True)   # before xdist's own, which reads the groups into the test ids
def pytest_collection_modifyitems(items):
    """Under `-n 2 --dist loadgroup` (make test) the tests that share something built once run on one xdist worker,
    which builds it once: the parity tests share one interpreter under the portable setting
    (train_helpers.portable_run), and the tests that use a fixture of SHARED_BUILDS share what it built. A test
    already in a group (test_train.py's method_runs) keeps it."""
    for item in items:
        if item.get_closest_marker('xdist_group') is not None:
            continue
        group = 'parity' if item.get_closest_marker('parity') is not None else \
            next((SHARED_BUILDS[name] for name in item.fixturenames if name in SHARED_BUILDS), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionfinish(session):
    """The parity tests' shared interpreter ends with the session (of this xdist worker)."""
    if 'train_helpers' in sys.modules:
        sys.modules['train_helpers'].PORTABLE_TRAINER_PROCESS.close()


def pytest_runtest_setup(item):
    """A parity test skips where its pinned numbers cannot hold (train_helpers.RECORDED_BUILD: another torch,
    torchvision, timm or Pillow, or not x86-64), except in CI (CI=true), where that means the pinned install moved
    and the numbers need recording again."""
    if item.get_closest_marker('parity') is not None:
        from train_helpers import parity_skip_reason
        reason = parity_skip_reason()
        if reason and os.environ.get('CI', '').lower() in ('1', 'true', 'yes'):
            pytest.fail(reason + '; in CI the pinned install must match: record the numbers again', pytrace=False)
        if reason:
            pytest.skip(reason)


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
