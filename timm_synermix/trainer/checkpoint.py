"""Crash-safe training checkpoints: atomic writes, exact-resume state, safe loading, safetensors export.

timm's CheckpointSaver writes `tmp.pth.tar`, unlinks `last.pth.tar` and renames, and never
fsyncs (timm issue #2407): a crash at the wrong moment leaves no `last.pth.tar`, or a file whose
blocks never reached the disk. Here every file is written to a unique temp file in the same
folder, flushed and fsynced, moved over the target with `os.replace` and the folder fsynced, so
at every moment the target is either the old complete file or the new complete file.
"""
import glob
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
from timm.utils import CheckpointSaver

from .errors import InputError, first_line

__all__ = ['fsync_dir', 'atomic_write', 'to_weights_only', 'AtomicCheckpointSaver', 'create_saver',
           'load_training_checkpoint', 'newest_good_checkpoint', 'export_safetensors']

# Seconds to sleep between writing a temp file and moving it into place. Only for crash tests,
# which kill the process while a checkpoint is being written.
SAVE_DELAY_ENV = 'TIMM_SYNERMIX_SAVE_DELAY'

TRAINING_KEYS = ('state_dict', 'optimizer', 'epoch')


def fsync_dir(path: str) -> None:
    """fsync a folder so a rename inside it survives a power loss (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask_mode() -> int:
    # mkstemp creates 0600 files; give the final file the mode a plain open() would.
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _temp_path(path: str):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    os.chmod(tmp, _umask_mode())
    return folder, fd, tmp


def _move_into_place(tmp: str, path: str, folder: str) -> None:
    delay = float(os.environ.get(SAVE_DELAY_ENV) or 0)
    if delay:
        time.sleep(delay)
    os.replace(tmp, path)
    fsync_dir(folder)


def atomic_write(path: str, write_fn: Callable, mode: str = 'wb') -> None:
    """Write a file so that it is, at every moment, either the old complete file or the new one.

    Writes through a unique temp file in the same folder: flush, fsync, `os.replace`, fsync the folder.
    A failing `write_fn` leaves the old file and no temp file.

    Args:
        path: Target file.
        write_fn: Called with the open temp file, e.g. `lambda f: torch.save(state, f)`.
        mode: 'wb' or 'w'.

    Example:
        ```python
        atomic_write('out/results.json', lambda f: f.write(json.dumps(results)), mode='w')
        ```
    """
    folder, fd, tmp = _temp_path(path)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        _move_into_place(tmp, path, folder)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_link(src: str, dst: str) -> None:
    """dst becomes a hard link to (or, where links fail, a copy of) src, atomically replacing dst."""
    folder = os.path.dirname(os.path.abspath(dst))
    tmp = os.path.join(folder, f'.{os.path.basename(dst)}.{os.getpid()}.link.tmp')
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except (OSError, NotImplementedError):
        shutil.copy2(src, tmp)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
    os.replace(tmp, dst)
    fsync_dir(folder)


def to_weights_only(obj: Any) -> Any:
    """Checkpoint extras as types `torch.load(weights_only=True)` accepts (numpy values become tensors/scalars)."""
    if isinstance(obj, dict):
        return {str(k): to_weights_only(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(to_weights_only(v) for v in obj)
    if isinstance(obj, list):
        return [to_weights_only(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class AtomicCheckpointSaver(CheckpointSaver):
    """timm's CheckpointSaver with atomic, fsynced files and extra resume state.

    `last.pth.tar`, `checkpoint-N`, `model_best` and `recovery-E-B` are never missing or partial:
    each is written by `atomic_write` or linked into place with `os.replace`. This is the one place a
    checkpoint is assembled: timm's entries (model, optimizer, task state, EMA, AMP scaler, saver) and,
    under 'synermix', `training_state.state_dict()` (scheduler, sampler, loop position, RNG, history).
    Temp files left in the folders by a killed run are removed on construction.

    Args:
        *args, **kwargs: as `timm.utils.CheckpointSaver`.
        training_state: Any object with `state_dict()`, e.g. `TrainingState`.

    Example:
        ```python
        saver = AtomicCheckpointSaver(model=model, optimizer=optimizer, args=args, task=task,
                                      checkpoint_dir=out, recovery_dir=out, training_state=state)
        saver.save_checkpoint(epoch, metric=top1)
        ```
    """

    def __init__(self, *args, training_state: Optional[Any] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.training_state = training_state
        # Temp files of a run that was killed mid-write: never complete, never read. One run writes a
        # folder at a time (train.py refuses an existing experiment without --resume).
        for folder in {self.checkpoint_dir, self.recovery_dir}:
            for stale in glob.glob(os.path.join(folder or '.', '.*.tmp')):
                os.unlink(stale)

    def _save(self, save_path, epoch, metric=None):
        from timm.utils.model import get_state_dict
        save_state = {
            'epoch': epoch,
            'arch': self.args.model if self.args is not None else type(self.model).__name__.lower(),
            'optimizer': self.optimizer.state_dict(),
            'version': 2,
        }
        if self.args is not None:
            save_state['args'] = self.args
        if self.amp_scaler is not None:
            save_state[self.amp_scaler.state_dict_key] = self.amp_scaler.state_dict()
        if self.task is not None:
            save_state.update(self.task.get_checkpoint_state(unwrap_fn=self.unwrap_fn))
            save_state.update(self.task.get_checkpoint_state(ema=True, unwrap_fn=self.unwrap_fn))
        else:
            save_state['state_dict'] = get_state_dict(self.model, self.unwrap_fn)
        if metric is not None:
            save_state['metric'] = metric
        save_state['saver'] = self.state_dict(epoch, metric)
        if self.training_state is not None:
            save_state['synermix'] = to_weights_only(self.training_state.state_dict())
        atomic_write(save_path, lambda f: torch.save(save_state, f))

    def save_milestone(self, epoch: int, metric: Optional[float] = None) -> str:
        """`milestone-N.pth.tar` after N = epoch + 1 completed epochs, kept whatever --checkpoint-hist says."""
        path = os.path.join(self.checkpoint_dir, f'milestone-{epoch + 1}{self.extension}')
        self._save(path, epoch, metric)
        return path

    def _replace(self, src, dst):
        os.replace(src, dst)
        fsync_dir(os.path.dirname(os.path.abspath(dst)))

    def _duplicate(self, src, dst):
        _atomic_link(src, dst)


def create_saver(args, task, model, optimizer, loss_scaler, state, output_dir: str, args_text: str,
                 decreasing: bool, ckpt) -> AtomicCheckpointSaver:
    """Rank 0's saver, continuing the checkpoint's (best metric, kept files) when it resumes this folder; writes
    args.yaml for a new run (a resumed run rewrites it with its first checkpoint)."""
    saver = AtomicCheckpointSaver(
        model=model, optimizer=optimizer, args=args.plain(), amp_scaler=loss_scaler, checkpoint_dir=output_dir,
        recovery_dir=output_dir, decreasing=decreasing, max_history=args.checkpoint_hist, task=task,
        training_state=state)
    if args.resume and ckpt.get('saver') and \
            os.path.abspath(os.path.dirname(args.resume)) == os.path.abspath(output_dir):
        saver.load_state_dict(ckpt['saver'])
    if not args.resume:
        try:
            atomic_write(os.path.join(output_dir, 'args.yaml'), lambda f: f.write(args_text), mode='w')
        except OSError as e:
            raise InputError(f'could not write args.yaml in {output_dir!r} ({e.strerror or first_line(e)}): free '
                             f'space or fix the folder, then rerun the same command')
    return saver


def _read(path: str):
    from timm.models._helpers import _torch_load
    return _torch_load(path, map_location='cpu', weights_only=True)


def _is_training_checkpoint(ckpt) -> bool:
    return isinstance(ckpt, dict) and all(k in ckpt for k in TRAINING_KEYS)


def newest_good_checkpoint(folder: str, exclude: Optional[str] = None) -> Optional[str]:
    """Newest *.pth.tar in `folder` (by modification time) that loads as a training checkpoint, or None."""
    # Hard links share a modification time: among equals, last.pth.tar is the name to resume from.
    files = sorted(glob.glob(os.path.join(folder, '*.pth.tar')),
                   key=lambda f: (os.path.getmtime(f), os.path.basename(f) == 'last.pth.tar'), reverse=True)
    for path in files:
        if exclude is not None and os.path.abspath(path) == os.path.abspath(exclude):
            continue
        try:
            if _is_training_checkpoint(_read(path)):
                return path
        except Exception:
            continue
    return None


def load_training_checkpoint(path: str, flag: str = '--resume') -> Dict[str, Any]:
    """Load a training checkpoint with `weights_only=True`, or fail naming the file and the newest good one.

    Args:
        path: Checkpoint written by train.py (or timm's train.py).
        flag: Option name used in the error message.

    Returns:
        The checkpoint dict.

    Raises:
        InputError: the file is missing, truncated or not a torch file, or lacks the training keys.
    """
    if not os.path.isfile(path):
        raise InputError(f'{flag} {path!r} does not exist: pass a checkpoint file, e.g. <experiment>/last.pth.tar')
    try:
        ckpt = _read(path)
        problem = None if _is_training_checkpoint(ckpt) else \
            f'is not a training checkpoint (no {"/".join(TRAINING_KEYS)})'
    except Exception as e:
        lines = [line for line in str(e).splitlines() if line.strip()]
        first = (lines[0] if lines else '').split('. ')[0][:120]
        problem = f'is truncated or unreadable ({type(e).__name__}: {first})'
    if problem is None:
        return ckpt
    good = newest_good_checkpoint(os.path.dirname(os.path.abspath(path)), exclude=path)
    fix = f'resume from the newest good one, {good!r}' if good else 'no good checkpoint is next to it; start afresh'
    raise InputError(f'{flag} {path!r} {problem}: {fix}')


def export_safetensors(checkpoint_path: str, out_path: str, metadata: Optional[Dict] = None) -> None:
    """Export a training checkpoint's weights (EMA when present) as safetensors, atomically.

    The file loads through `timm.create_model(..., pretrained=True, pretrained_cfg_overlay=dict(file=...))`.

    Args:
        checkpoint_path: train.py checkpoint (e.g. model_best.pth.tar).
        out_path: .safetensors file to write.
        metadata: Stored as strings in the safetensors header.
    """
    from safetensors.torch import save_file
    ckpt = _read(checkpoint_path)
    state_dict = ckpt.get('state_dict_ema') or ckpt['state_dict']
    state_dict = {k[7:] if k.startswith('module.') else k: v.detach().cpu().contiguous().clone()
                  for k, v in state_dict.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    folder, fd, tmp = _temp_path(out_path)
    os.close(fd)
    try:
        save_file(state_dict, tmp, metadata=meta)
        os.chmod(tmp, _umask_mode())  # safetensors recreates the file with its own mode
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        _move_into_place(tmp, out_path, folder)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
