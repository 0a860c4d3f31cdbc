"""Atomic files, exact-resume RNG state, safe checkpoint loading and safetensors export."""
import os
import random
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from timm_synermix.trainer.checkpoint import (
    AtomicCheckpointSaver, atomic_write, export_safetensors, load_training_checkpoint, newest_good_checkpoint,
    to_weights_only)
from timm_synermix.trainer.state import RngState
from timm_synermix.trainer.errors import InputError


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / 'f.bin'
    atomic_write(str(path), lambda f: f.write(b'one'))

    def fail(f):
        f.write(b'partial')
        raise RuntimeError('disk full')
    with pytest.raises(RuntimeError):
        atomic_write(str(path), fail)
    assert path.read_bytes() == b'one'
    assert os.listdir(tmp_path) == ['f.bin']  # no temp file left behind
    atomic_write(str(path), lambda f: f.write('two'), mode='w')
    assert path.read_text() == 'two'
    assert (os.stat(path).st_mode & 0o777) == (0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _saver(tmp_path, extra=None):
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, AtomicCheckpointSaver(model=model, optimizer=opt, checkpoint_dir=str(tmp_path),
                                        recovery_dir=str(tmp_path), max_history=2,
                                        training_state=SimpleNamespace(state_dict=extra) if extra else None)


def test_saver_last_is_never_missing_or_partial(tmp_path):
    model, saver = _saver(tmp_path, extra=lambda: {'sampler': {'seed': 1, 'epoch': 0}, 'x': np.arange(3)})
    saver.save_checkpoint(0, metric=1.0)
    last = str(tmp_path / 'last.pth.tar')
    seen = []
    stop = threading.Event()

    def watch():  # the target must exist and load at every moment of the next saves
        while not stop.is_set():
            seen.append(load_training_checkpoint(last)['epoch'])
    t = threading.Thread(target=watch)
    t.start()
    for epoch in range(1, 6):
        with torch.no_grad():
            model.weight.add_(1.0)
        saver.save_checkpoint(epoch, metric=float(epoch))
    stop.set()
    t.join()
    assert seen and set(seen) <= set(range(6))
    ckpt = load_training_checkpoint(last)
    assert ckpt['epoch'] == 5 and torch.equal(ckpt['state_dict']['weight'], model.weight)
    assert ckpt['synermix']['sampler'] == {'seed': 1, 'epoch': 0}
    assert torch.equal(ckpt['synermix']['x'], torch.arange(3))
    names = sorted(os.listdir(tmp_path))
    assert names == ['checkpoint-4.pth.tar', 'checkpoint-5.pth.tar', 'last.pth.tar', 'model_best.pth.tar']
    assert torch.equal(load_training_checkpoint(str(tmp_path / 'model_best.pth.tar'))['state_dict']['weight'],
                       model.weight)


def test_rng_state_round_trips_through_checkpoint(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    np.random.randn()  # a cached gaussian is part of numpy's state
    path = tmp_path / 's.pt'
    torch.save(to_weights_only({'rng': RngState.capture()}), path)
    expected = (random.random(), np.random.randn(), torch.rand(2))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    RngState.restore(torch.load(path, weights_only=True)['rng'])
    got = (random.random(), np.random.randn(), torch.rand(2))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_truncated_and_foreign_checkpoints_name_newest_good(tmp_path):
    _, saver = _saver(tmp_path)
    saver.save_checkpoint(0)
    good = str(tmp_path / 'last.pth.tar')
    truncated = tmp_path / 'cut.pth.tar'
    data = open(good, 'rb').read()
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError) as e:
        load_training_checkpoint(str(truncated))
    msg = str(e.value)
    assert 'truncated' in msg and 'cut.pth.tar' in msg and 'last.pth.tar' in msg, msg
    foreign = tmp_path / 'weights.pth.tar'
    torch.save({'fc.weight': torch.zeros(2, 3)}, foreign)
    with pytest.raises(InputError, match='not a training checkpoint'):
        load_training_checkpoint(str(foreign))
    with pytest.raises(InputError, match='does not exist'):
        load_training_checkpoint(str(tmp_path / 'missing.pth.tar'))
    assert newest_good_checkpoint(str(tmp_path), exclude=good) == str(tmp_path / 'checkpoint-0.pth.tar')
    assert newest_good_checkpoint(str(tmp_path)) == good


def test_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ('true',))
    path = tmp_path / 'evil.pth.tar'
    torch.save({'state_dict': {}, 'optimizer': {}, 'epoch': 0, 'x': Payload()}, path)
    with pytest.raises(InputError, match='unreadable'):
        load_training_checkpoint(str(path))


def test_export_safetensors_prefers_ema_and_strips_module(tmp_path):
    from safetensors.torch import load_file
    ckpt = tmp_path / 'c.pth.tar'
    torch.save({'state_dict': {'module.w': torch.ones(2)}, 'state_dict_ema': {'module.w': torch.full((2,), 3.)}},
               ckpt)
    out = tmp_path / 'm.safetensors'
    export_safetensors(str(ckpt), str(out), metadata={'arch': 'x', 'num_classes': 2})
    assert torch.equal(load_file(str(out))['w'], torch.full((2,), 3.))
    assert sorted(os.listdir(tmp_path)) == ['c.pth.tar', 'm.safetensors']
