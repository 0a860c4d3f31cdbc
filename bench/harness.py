"""What every measurement shares: the BENCH line, interleaved timing, medians, peak tensor memory, host syncs.

A goal is always read from a *ratio* of two things measured in the same process, interleaved repeat by repeat,
summarised as the median with its interquartile range and min-max; absolute times only appear in the details.
"""
import time
import weakref
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn


class Report:
    """Collects BENCH rows, prints them as they come, and renders the summary table."""

    def __init__(self):
        self.rows = []      # (name, ratio, goal text, met: Optional[bool])
        self.lines = []

    def emit(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def bench(self, name: str, values: Sequence[float], what: str, goal: Optional[str] = None,
              extra: str = '') -> float:
        """Emit `BENCH name ratio=<median> (...)` for per-repeat ratios `values`; `goal` like '<=2.05'."""
        values = np.asarray([v for v in values], dtype=np.float64)
        median = float(np.median(values))
        q1, q3 = (float(v) for v in np.percentile(values, [25, 75]))
        spread = f'IQR {q1:.3g}-{q3:.3g}, min-max {values.min():.3g}-{values.max():.3g}, n={values.size}'
        met = None
        if goal:
            op = next(o for o in ('<=', '>=', '<', '>') if goal.startswith(o))
            bound = float(goal[len(op):])
            met = {'<=': median <= bound, '>=': median >= bound, '<': median < bound, '>': median > bound}[op]
        details = f'{what}; {spread}' + (f'; {extra}' if extra else '') + (f'; goal {goal}' if goal else '')
        self.emit(f'BENCH {name} ratio={median:.4g} ({details})')
        self.rows.append((name, median, goal or 'info', met))
        return median

    def note(self, text: str) -> None:
        self.emit(f'NOTE {text}')

    def profile(self, name: str, text: str) -> None:
        self.emit(f'PROFILE {name} {text}')

    def summary(self) -> str:
        out = ['| row | ratio | goal | met? |', '| --- | ---: | --- | --- |']
        for name, ratio, goal, met in self.rows:
            mark = 'n/a' if met is None else ('yes' if met else '**no**')
            out.append(f'| {name} | {ratio:.3g} | {goal} | {mark} |')
        return '\n'.join(out)


# --------------------------------------------------------------------------------------------
# Timing

def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# CPU time of this process by default on CPU: the work done, insensitive to other processes that
# share the cores (wall time on a shared machine swings by +-50% from one step to the next).
CLOCK = {'cpu': time.process_time, 'wall': time.perf_counter}
_clock = time.process_time


def use_clock(name: str) -> None:
    """Select the clock of `now` and `timed` for the whole run: 'cpu' or 'wall'."""
    global _clock
    _clock = CLOCK[name]


def now() -> float:
    return _clock()


def timed(fn: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    start = now()
    fn()
    synchronize(device)
    return now() - start


def interleave(cases: Dict[str, Callable[[], float]], repeats: int, warmup: int) -> Dict[str, List[float]]:
    """Run every case once per repeat, rotating their order; each case returns its own seconds."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    times = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(cases[name]())
    return times


def per_repeat(times: Dict[str, List[float]], num: str, den: str) -> List[float]:
    return [a / b for a, b in zip(times[num], times[den])]


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=np.float64)))


def fmt_s(seconds: float) -> str:
    return f'{seconds * 1e3:.1f} ms' if seconds < 1 else f'{seconds:.2f} s'


# --------------------------------------------------------------------------------------------
# Training steps and labels shared by the sections

def bench_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    # A tiny lr keeps the weights finite over the many steps timed: the values do not matter, only the work.
    return torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)


def backward_and_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def cifar100_like_labels() -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(100), 500))


# --------------------------------------------------------------------------------------------
# Peak memory and host syncs

class PeakTensorMemory:
    """Peak bytes of tensor storages created while active (CPU or any device), above those before.

    A TorchDispatchMode sees every op of the forward, backward (CPU autograd runs in this thread)
    and optimizer step; each new storage an op returns (not a view or in-place result) is counted
    until it is freed. Allocator caching, fragmentation and library scratch space are not counted.
    """

    def __new__(cls):
        from torch.utils._python_dispatch import TorchDispatchMode

        class _Mode(TorchDispatchMode):
            def __init__(self):
                super().__init__()
                self.live, self.current, self.peak = {}, 0, 0

            def _free(self, key):
                self.current -= self.live.pop(key, 0)

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                returns = func._schema.returns
                for i, t in enumerate(out if isinstance(out, (tuple, list)) else (out,)):
                    if not isinstance(t, torch.Tensor) or (i < len(returns) and returns[i].alias_info is not None):
                        continue
                    storage = t.untyped_storage()
                    key, nbytes = storage.data_ptr(), storage.nbytes()
                    if nbytes == 0 or key in self.live:
                        continue
                    self.live[key] = nbytes
                    self.current += nbytes
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, key)
                return out
        return _Mode()


def peak_step_memory(fn: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated by tensors during `fn`, above what was allocated before it.

    CUDA: torch.cuda.max_memory_allocated. CPU: `PeakTensorMemory` (every storage an op creates,
    until freed): the activations, gradients, temporaries and input batch of the step, not RSS.
    """
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    with PeakTensorMemory() as tracker:
        fn()
    return tracker.peak


class HostSyncCounter:
    """Counts the tensor calls that make the host wait for the device (item, tolist, cpu, numpy, bool, ...)."""

    NAMES = {'item', 'tolist', 'cpu', 'numpy', '__bool__', '__float__', '__int__', '__index__', 'unique', 'nonzero',
             '_unique', '_unique2', 'unique_consecutive', 'masked_select'}

    def __new__(cls):
        from torch.overrides import TorchFunctionMode

        class _Mode(TorchFunctionMode):
            def __init__(self):
                super().__init__()
                self.calls = []

            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = getattr(func, '__name__', str(func))
                if name in HostSyncCounter.NAMES:
                    self.calls.append(name)
                return func(*args, **(kwargs or {}))
        return _Mode()
