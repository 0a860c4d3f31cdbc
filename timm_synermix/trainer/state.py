"""Resumable training state: each piece owns `state_dict()` / `load_state_dict()`, `TrainingState` bundles them.

The checkpoint's 'synermix' entry is `TrainingState.state_dict()`; `AtomicCheckpointSaver` writes it beside
timm's own entries (model, optimizer, task, EMA, AMP scaler), so a checkpoint is assembled in one place.
"""
import random
from contextlib import contextmanager
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist

from .checkpoint import to_weights_only

__all__ = ['LoopPosition', 'History', 'LossMeters', 'RngState', 'TrainingState']


class LoopPosition:
    """Where training stands: the epoch, the next batch of it (None at an epoch's end), updates done, and
    the cost so far (images through forward+backward, training seconds) over the finished epochs."""

    def __init__(self, epoch: int = 0, next_batch: Optional[int] = None, num_updates: int = 0):
        self.epoch, self.next_batch, self.num_updates = epoch, next_batch, num_updates
        self.epochs_done, self.image_passes, self.train_seconds = 0, 0, 0.0

    def state_dict(self) -> Dict[str, Any]:
        return {'epoch': self.epoch, 'next_batch': self.next_batch, 'num_updates': self.num_updates,
                'cost': {'epochs': self.epochs_done, 'image_passes': self.image_passes,
                         'train_seconds': self.train_seconds}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epoch = int(state.get('epoch', 0))
        self.next_batch = state.get('next_batch')
        self.num_updates = int(state.get('num_updates') or 0)
        cost = state.get('cost') or {}
        self.epochs_done = int(cost.get('epochs', 0))
        self.image_passes = int(cost.get('image_passes', 0))
        self.train_seconds = float(cost.get('train_seconds', 0.0))


class History:
    """One row per finished epoch (summary.csv, results.json)."""

    def __init__(self):
        self.rows: List[Dict[str, Any]] = []

    def append(self, row: Dict[str, Any]) -> None:
        self.rows.append(dict(row))

    def drop_from(self, epoch: int) -> None:
        """Forget epochs >= `epoch` (a resume that restarts there retrains them)."""
        self.rows = [row for row in self.rows if row['epoch'] < epoch]

    def state_dict(self) -> List[Dict[str, Any]]:
        return list(self.rows)

    def load_state_dict(self, rows: Optional[List[Dict[str, Any]]]) -> None:
        self.rows = [dict(row) for row in rows or []]


class LossMeters:
    """Sample-weighted running means of the loss terms, kept on the device.

    `update` queues a few tensor ops and never waits for the device; `read` (at log intervals and
    epoch ends) is the one host sync, summed over ranks under torch.distributed. The first step with a
    non-finite loss is recorded on the device too, so `read` can name it.
    """
    # sums: loss·n, intra·n (intra steps), inter·n, n, n (intra steps), steps, images through forward+backward
    _FIELDS = ('loss', 'loss_intra', 'loss_inter', 'samples', 'intra_samples', 'steps', 'image_passes')

    def __init__(self, device: torch.device = torch.device('cpu')):
        self.device = device
        self.reset()

    def reset(self) -> None:
        dtype = torch.float32 if self.device.type == 'mps' else torch.float64
        self.sums = torch.zeros(len(self._FIELDS), dtype=dtype, device=self.device)
        self.last = torch.zeros(4, dtype=dtype, device=self.device)  # loss, intra, inter, batch of the last step
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)

    def update(self, loss: torch.Tensor, loss_intra: torch.Tensor, loss_inter: torch.Tensor, batch: int,
               with_intra: bool, step: int, image_passes: int) -> None:
        n, w = float(batch), float(with_intra)
        loss, intra, inter = (t.detach().to(self.sums.dtype) for t in (loss, loss_intra, loss_inter))
        ones = torch.ones((), dtype=self.sums.dtype, device=self.device)
        self.last = torch.stack([loss, intra, inter, ones * n])
        self.sums += torch.stack([loss * n, intra * (n * w), inter * n, ones * n, ones * (n * w), ones,
                                  ones * float(image_passes)])
        bad = ~torch.isfinite(loss)
        self.first_bad_step = torch.where(bad & (self.first_bad_step < 0), step, self.first_bad_step)

    def read(self, distributed: bool = False) -> Dict[str, float]:
        """Means so far (and over ranks), the last step's values and the first non-finite step (-1: none)."""
        sums, bad = self.sums.clone(), self.first_bad_step.clone()
        if distributed:
            dist.all_reduce(sums)
            bad = torch.where(bad < 0, torch.iinfo(torch.int64).max, bad)
            dist.all_reduce(bad, op=dist.ReduceOp.MIN)
            bad = torch.where(bad == torch.iinfo(torch.int64).max, -1, bad)
        values = dict(zip(self._FIELDS, sums.tolist()))
        last = self.last.tolist()
        samples = max(values['samples'], 1.0)
        return OrderedDict(
            loss=values['loss'] / samples, loss_intra=values['loss_intra'] / max(values['intra_samples'], 1.0),
            loss_inter=values['loss_inter'] / samples, batch=values['samples'] / max(values['steps'], 1.0),
            last_loss=last[0], last_intra=last[1], last_inter=last[2], last_batch=last[3],
            samples=values['samples'], intra_samples=values['intra_samples'], image_passes=values['image_passes'],
            first_bad_step=int(bad.item()))

    def state_dict(self) -> Dict[str, float]:
        return dict(zip(self._FIELDS, self.sums.tolist()))

    def load_state_dict(self, state: Optional[Dict[str, float]]) -> None:
        self.reset()
        if state and all(k in state for k in self._FIELDS):
            self.sums = torch.tensor([float(state[k]) for k in self._FIELDS], dtype=self.sums.dtype,
                                     device=self.device)


class RngState:
    """Python, numpy, torch (and CUDA) RNG states of every rank, storable with weights_only=True."""

    def __init__(self, world_size: int = 1, rank: int = 0):
        self.world_size, self.rank = world_size, rank

    @staticmethod
    def capture() -> Dict[str, Any]:
        np_state = np.random.get_state()
        state = {
            'python': random.getstate(),
            'numpy': {'name': np_state[0], 'keys': torch.from_numpy(np_state[1].astype(np.int64)),
                      'pos': int(np_state[2]), 'has_gauss': int(np_state[3]), 'cached_gaussian': float(np_state[4])},
            'torch': torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def restore(state: Dict[str, Any]) -> None:
        version, internal, gauss = state['python']  # a checkpoint turns the state tuple's inner tuple into a list
        random.setstate((version, tuple(internal), gauss))
        n = state['numpy']
        np.random.set_state((n['name'], n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                             n['cached_gaussian']))
        torch.set_rng_state(state['torch'])
        if 'cuda' in state and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state['cuda'])

    def state_dict(self) -> List[Dict[str, Any]]:
        """Every rank's state (a collective under torch.distributed: all ranks call it together)."""
        own = to_weights_only(self.capture())
        if self.world_size == 1:
            return [own]
        states = [None] * self.world_size
        dist.all_gather_object(states, own)
        return states

    def own(self, states: Optional[List[Dict[str, Any]]]) -> Optional[Dict[str, Any]]:
        """This rank's entry of a saved `state_dict()`, or None when the world size changed."""
        if states and len(states) == self.world_size:
            return states[self.rank]
        return None


class TrainingState:
    """Everything an exact resume needs beyond timm's entries: one `state_dict()` for the checkpoint.

    Args:
        sampler: The training batch sampler (batch order, seed, epoch position).
        scheduler: timm LR scheduler or None.
        meters: `LossMeters` of the running epoch.
        rng: `RngState`.
        method: The run's method name, recorded with the state.
    """

    def __init__(self, sampler, scheduler, meters: LossMeters, rng: RngState, method: str):
        self.sampler, self.scheduler, self.meters, self.rng, self.method = sampler, scheduler, meters, rng, method
        self.position = LoopPosition()
        self.history = History()
        self.rng_states: Optional[List[Dict[str, Any]]] = None  # gathered by `snapshot`, stored by `state_dict`
        self.resume_rng: Optional[Dict[str, Any]] = None  # a mid-epoch resume's RNG, restored by the loop

    @contextmanager
    def mid_epoch(self, *, epoch: int, next_batch: int, num_updates: int):
        """The position of a recovery checkpoint, written inside this block; the epoch's position after it."""
        saved = self.position.state_dict()
        self.position.epoch, self.position.next_batch, self.position.num_updates = epoch, next_batch, num_updates
        try:
            yield
        finally:
            self.position.load_state_dict(saved)
            self.rng_states = None

    def snapshot(self) -> None:
        """Gather every rank's RNG state (a collective): call on all ranks right before rank 0 saves."""
        self.rng_states = self.rng.state_dict()

    def state_dict(self) -> Dict[str, Any]:
        mid_epoch = self.position.next_batch is not None
        return {
            **self.position.state_dict(),
            'history': self.history.state_dict(),
            'scheduler': self.scheduler.state_dict() if self.scheduler is not None else None,
            'sampler': self.sampler.state_dict(),
            'meters': self.meters.state_dict() if mid_epoch else None,
            'rng_all': self.rng_states or [to_weights_only(self.rng.capture())],
            'method': self.method,
        }

    def load_state_dict(self, state: Dict[str, Any], load_scheduler: bool = True) -> None:
        self.position.load_state_dict(state)
        self.history.load_state_dict(state.get('history'))
        if load_scheduler and self.scheduler is not None and state.get('scheduler') is not None:
            self.scheduler.load_state_dict(state['scheduler'])
        if state.get('sampler'):  # the batch order continues the checkpoint's, whatever --seed says now
            self.sampler.load_state_dict(state['sampler'])
        self.meters.load_state_dict(state.get('meters') if self.position.next_batch is not None else None)
