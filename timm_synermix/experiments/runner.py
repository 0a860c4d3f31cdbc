"""The one runner under every experiment: typed run specs, their train.py commands, and their execution.

A `RunSpec` is one train.py run of a plan: its method (a `Preset`), batch composition, epochs, seed, β, the options
the plan sets, the user's arguments and the data. Its command, its cost and whether it has an intra term all come
from the spec and its `Preset`; no code here or in the plans keys on method names.

The `Runner` owns an output folder (a lock: one runner at a time) and, in it, one folder per run
(`OUT/runs/<name>`), whose `run.json` records what the run is: its command and a fingerprint of its data (the
classes and image counts of every split, a digest of the file names and sizes, and a digest of every file the
arguments name, such as pretrained weights). A run is reused only when that record matches the plan; an interrupted
run continues from its checkpoint (`--resume auto`); a folder the plan did not write, or one made with other
arguments or data, stops the plan before anything runs, in one line that says what changed. Nothing is ever deleted.

Every command passes the same checks train.py makes before it reads data, and a flag the plan sets itself is refused
among the user's arguments (abbreviations and `-c` files included), so that what the plan says is what runs.
"""
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..method.presets import Preset
from ..trainer.args import given_options, parse_args
from ..trainer.config import apply_method
from ..trainer.errors import InputError
from ..trainer.validation import check_args
from .scores import Score

__all__ = ['RunnerError', 'RunSpec', 'RunResult', 'Runner', 'PLAN_OWNED', 'RECORD', 'data_identity', 'user_args',
           'split_argv', 'beta_text', 'option_value']

RECORD = 'run.json'
# Options a plan decides for every run whether or not one spec sets them: what --method stands for (so a method is
# what its Preset says), the schedule and the score (every run scored alike), the eval set, where a run writes and
# how it resumes.
PLAN_OWNED = frozenset({
    'method', 'synermix', 'synermix_source', 'synermix_beta', 'synermix_batches', 'synermix_every', 'mixup', 'cutmix',
    'cutmix_minmax', 'manifold_mixup', 'aug_repeats', 'seed', 'epochs', 'start_epoch', 'stop_epoch', 'report_last_k',
    'val_interval', 'val_holdout', 'output', 'experiment', 'resume', 'data', 'data_dir'})
_OWNED_HINT = {'seed': 'use --seeds', 'epochs': 'use --epochs', 'report_last_k': 'use --last-k'}


class RunnerError(Exception):
    """A problem the user can fix (arguments, a stale folder, a failed run): one message; `code` is the exit code."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def beta_text(beta: float) -> str:
    return f'{beta:g}'


def split_argv(argv: Optional[Sequence[str]]) -> Tuple[List[str], List[str]]:
    """(the command's own arguments, those after '--' for every train.py run)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--' in argv:
        i = argv.index('--')
        return argv[:i], argv[i + 1:]
    return argv, []


def user_args(extra: Sequence[str], device: Optional[str] = None) -> Tuple[str, ...]:
    """The user's train.py arguments plus the runner's defaults where the user gave none: `--device` as timm users
    expect (cuda when available, else cpu) and `--checkpoint-hist 1` (a plan keeps results, not every epoch)."""
    extra = tuple(str(a) for a in extra)
    given = _given(extra)
    defaults = []
    if 'device' not in given:
        defaults += ['--device', device or _default_device()]
    if 'checkpoint_hist' not in given:
        defaults += ['--checkpoint-hist', '1']
    return tuple(defaults) + extra


def _default_device() -> str:
    import torch
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def _given(argv: Sequence[str]) -> Dict[str, str]:
    try:
        return given_options(argv)
    except InputError as e:
        raise RunnerError(f'the train.py arguments after "--": {e}')


@dataclass(frozen=True)
class RunSpec:
    """One train.py run of a plan.

    Args:
        name: Its folder under `OUT/runs` (unique in a plan).
        preset: The method.
        seed, epochs: As train.py's flags.
        data: ImageFolder root (train/ and a validation split).
        last_k: The plan's score: eval top-1 averaged over the last k epochs.
        beta: β of the intra term (None: the preset's default; must be None without an intra term).
        composition: `--batch-composition` (None: the preset's, supplemented with the intra term).
        options: Further flags the plan sets for this run, e.g. ('--synermix-every', '4').
        extra: The user's train.py arguments, the same for every run of a plan (`user_args`).
        variant: The plan's name for what the run is (a frontier variant, or the method's name).
        label, role: The table row the run belongs to, and its part in the plan (e.g. 'ladder').
    """
    name: str
    preset: Preset
    seed: int
    epochs: int
    data: str
    last_k: int
    beta: Optional[float] = None
    composition: Optional[str] = None
    options: Tuple[str, ...] = ()
    extra: Tuple[str, ...] = ()
    variant: str = ''
    label: str = ''
    role: str = ''

    @property
    def intra(self) -> bool:
        """Whether the run trains the intra term."""
        return self.preset.intra and self.beta != 0

    def own_args(self) -> List[str]:
        """The flags the plan sets for this run."""
        args = ['--method', self.preset.name, '--seed', str(self.seed), '--epochs', str(self.epochs),
                '--report-last-k', str(self.last_k)]
        if self.beta is not None:
            args += ['--synermix-beta', beta_text(self.beta)]
        if self.composition is not None:
            args += ['--batch-composition', self.composition]
        return args + [str(a) for a in self.options]

    def argv(self, out_dir) -> List[str]:
        """train.py's arguments: resumable in its own folder under `out_dir/runs`."""
        return [str(self.data), *self.own_args(), '--output', str(Path(out_dir) / 'runs'), '--experiment', self.name,
                '--resume', 'auto', *self.extra]

    def estimated_passes(self, args, train_images: int, num_classes: int) -> float:
        """Images through forward+backward the run will cost (for the order and the ETA; results.json measures it).

        Args:
            args: The run's resolved train.py options (batch size, composition, --synermix-every).
        """
        every = max(1, getattr(args, 'synermix_every', 1) or 1)
        growth = 1.0
        if args.synermix_batches == 'supplemented':  # each class seen once in a batch gets one more image
            growth += (1.0 - 1.0 / max(num_classes, 1)) ** (args.batch_size - 1) / every
        passes = 1.0 + (self.preset.passes - 1) / every if self.intra else 1.0
        return self.epochs * train_images * growth * passes


@dataclass
class RunResult:
    """A finished run as a plan reads it: its score under the plan's rule, cost and where it is."""
    spec: RunSpec
    path: Path
    results: Dict
    reused: bool
    wall_s: Optional[float] = None

    @property
    def top1(self) -> float:
        return float(self.results['last_k_mean_top1'])

    @property
    def cost(self) -> float:
        return float(self.results['cost']['image_passes'])

    @property
    def seconds(self) -> float:
        return float(self.results['cost']['train_seconds'])


def _digest(items) -> str:
    return hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:16]


def _split_identity(folder: Path) -> Dict:
    classes, files = {}, []
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        names = sorted(f for f in os.listdir(cls) if not f.startswith('.'))
        classes[cls.name] = len(names)
        files += [(cls.name, f, os.path.getsize(cls / f)) for f in names]
    return dict(classes=classes, digest=_digest(files))


def _find_split(root: Path, name: str) -> Optional[Path]:
    from timm.data.dataset_factory import _search_split  # timm's rule for 'validation' -> val/, valid/, ...
    found = Path(_search_split(str(root), name))
    return found if found != root and found.is_dir() else None


def data_identity(root, train_split: str = 'train', val_split: str = 'validation') -> Dict:
    """{'train': ..., 'val': ...}: per split the class folders with their image counts and a digest of the file
    names and sizes, found as train.py finds them."""
    root = Path(root)
    if not root.is_dir():
        raise RunnerError(f'data dir {root} does not exist: pass an ImageFolder root with train/ and val/ folders')
    identity = {}
    for key, name in (('train', train_split), ('val', val_split)):
        folder = _find_split(root, name)
        if folder is None:
            raise RunnerError(f'{root} has no {name!r} split folder: an ImageFolder root with train/ and val/ '
                              f'class folders is needed (--val-split NAME after "--" for another name)')
        identity[key] = dict(_split_identity(folder), folder=folder.name)
        if not identity[key]['classes']:
            raise RunnerError(f'{folder} has no class folders: put each class\'s images in {folder}/<class>/')
    return identity


def _data_changes(old: Dict, new: Dict) -> List[str]:
    changes = []
    for split in ('train', 'val'):
        a, b = old.get(split, {}).get('classes', {}), new[split]['classes']
        gone, added = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        if gone:
            changes.append(f'{split}: class{"es" if len(gone) > 1 else ""} {", ".join(gone[:5])} removed')
        if added:
            changes.append(f'{split}: class{"es" if len(added) > 1 else ""} {", ".join(added[:5])} added')
        counted = sum(b.values()) - sum(a.values())
        if counted:
            changes.append(f'{split}: {abs(counted)} {"more" if counted > 0 else "fewer"} images')
        if not (gone or added or counted) and old.get(split, {}).get('digest') != new[split]['digest']:
            changes.append(f'{split}: same classes and counts, other files')
    return changes


def _files_named(argv: Sequence[str]) -> Dict[str, str]:
    """{path: sha256} of every existing file among the arguments (pretrained weights, a teacher, a class map)."""
    out = {}
    for arg in argv:
        if len(arg) < 4096 and os.path.isfile(arg):
            digest = hashlib.sha256()
            with open(arg, 'rb') as f:
                for chunk in iter(lambda: f.read(1 << 20), b''):
                    digest.update(chunk)
            out[arg] = digest.hexdigest()[:16]
    return out


class Runner:
    """Runs a plan's specs in one output folder, `workers` at a time.

    Args:
        out_dir: The output folder (runs/, logs/, the plan's reports).
        command: The command line that continues an interrupted plan (printed when it stops).
        workers: Runs at a time; with several CUDA devices, worker i runs on device i mod count.
        threads: OMP_NUM_THREADS of every run.
        stream: Where progress goes (default: stdout).
        train_script: A train.py-like script to run instead of `python -m timm_synermix.trainer` (tests).

    Example:
        ```python
        with Runner('frontier_out', command='timm-synermix-frontier ...') as runner:
            results = runner.run(specs)
        ```
    """

    def __init__(self, out_dir, command: str = '', workers: int = 2, threads: int = 1, stream=None,
                 train_script: Optional[str] = None, python: Optional[str] = None):
        self.out = Path(out_dir).resolve()
        self.command, self.workers, self.threads = command, max(1, workers), threads
        self.stream = stream or sys.stdout
        self.train_script, self.python = train_script, python or sys.executable
        self._write_lock = threading.Lock()
        self._lock_file = None
        self._children: Dict[str, subprocess.Popen] = {}
        self._stop = None
        self._identities: Dict[str, Dict] = {}

    # -- the output folder -----------------------------------------------------------------------------------------
    def __enter__(self) -> 'Runner':
        import fcntl
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.out / '.runner.lock', 'a+')
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip() or 'another process'
            self._lock_file.close()
            self._lock_file = None
            raise RunnerError(f'{self.out} is in use by {holder}: wait for it to end, or pass another --out')
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f'process {os.getpid()}: {self.command}'.strip())
        self._lock_file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock; a killed runner's lock goes with its process
            self._lock_file = None

    def emit(self, line: str) -> None:
        """One whole line at a time: two workers' lines never merge."""
        with self._write_lock:
            self.stream.write(line + '\n')
            self.stream.flush()

    # -- checks before anything runs -------------------------------------------------------------------------------
    def identity(self, spec: RunSpec) -> Dict:
        """The fingerprint of the spec's data, its splits found as train.py finds them."""
        key = (spec.data, option_value(spec.extra, 'train_split', 'train'),
               option_value(spec.extra, 'val_split', 'validation'))
        if key not in self._identities:
            self._identities[key] = data_identity(*key)
        return self._identities[key]

    def check(self, specs: Sequence[RunSpec]) -> Dict[str, object]:
        """Refuse a plan that is not what it says, before anything runs; returns {name: resolved train.py options}.

        Names must be unique (a repeated seed, variant or rung would count one run twice), the user's arguments
        must not set what the plan owns, and every command must pass train.py's own checks."""
        names = [s.name for s in specs]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise RunnerError(f'the plan holds {", ".join(repeated)} more than once: a repeated seed, variant or '
                              f'ladder rung (rungs that round to the same epochs) is one run, not two')
        owned = set(PLAN_OWNED).union(*(_given(s.own_args()) for s in specs))
        for extra in {s.extra for s in specs}:
            given = _given(extra)
            clash = sorted(set(given) & owned)
            if clash:
                hint = _OWNED_HINT.get(clash[0], 'the plan sets it for each run')
                raise RunnerError(f'{given[clash[0]]} is set by the plan itself: remove it from the train.py '
                                  f'arguments after "--" ({hint})')
            if given.get('val_split') is not None and option_value(extra, 'val_split') == '':
                raise RunnerError('--val-split "" turns evaluation off, and every run is scored on the validation '
                                  'split: remove it')
        resolved = {}
        for spec in specs:
            resolved[spec.name] = self.check_command(spec)
            self.identity(spec)
        return resolved

    def check_command(self, spec: RunSpec):
        """train.py's own checks of the spec's command, before it reads data; returns its resolved options."""
        try:
            args, _ = parse_args(spec.argv(self.out))
            apply_method(args)
            check_args(args)
        except InputError as e:
            raise RunnerError(f'run {spec.name}: train.py refuses its arguments: {e}')
        if spec.epochs < spec.last_k:
            raise RunnerError(f'run {spec.name} trains {spec.epochs} epochs and is scored on the last '
                              f'{spec.last_k}: use --last-k {spec.epochs} or more epochs')
        return args

    def record(self, spec: RunSpec) -> Dict:
        """What a run is: its command (output folder aside) and the fingerprint of its data and named files."""
        argv = spec.argv('<out>')
        return dict(argv=argv, data=self.identity(spec), files=_files_named(argv), label=spec.label,
                    role=spec.role)

    def _state(self, spec: RunSpec) -> str:
        """'new', 'finished' or 'interrupted'; a folder that is not this run's raises RunnerError."""
        folder = self.out / 'runs' / spec.name
        if not folder.exists():
            return 'new'
        path = folder / RECORD
        if not path.is_file():
            raise RunnerError(f'{folder} holds files this plan did not write: remove it, or pass another --out')
        old, new = json.loads(path.read_text()), self.record(spec)
        if old['argv'] != new['argv']:
            then, now = set(old['argv']), set(new['argv'])
            diff = ' '.join(a for a in new['argv'] if a not in then) or '(order)'
            gone = ' '.join(a for a in old['argv'] if a not in now)
            raise RunnerError(f'{folder} was made with other arguments (then: {gone or "-"}; now: {diff}): remove '
                              f'it, or pass another --out')
        changes = _data_changes(old['data'], new['data'])
        changes += [f'{p} changed' for p, h in new['files'].items() if old['files'].get(p) not in (None, h)]
        if changes:
            raise RunnerError(f'{folder} was made with other data ({"; ".join(changes)}): remove it, or pass '
                              f'another --out')
        results = folder / 'results.json'
        if results.is_file() and json.loads(results.read_text()).get('finished', True):
            return 'finished'
        return 'interrupted'

    # -- running ---------------------------------------------------------------------------------------------------
    def command_of(self, spec: RunSpec) -> List[str]:
        trainer = [self.python, self.train_script] if self.train_script else \
            [self.python, '-m', 'timm_synermix.trainer']
        return trainer + spec.argv(self.out)

    def plan_lines(self, specs: Sequence[RunSpec]) -> List[str]:
        """One shell command per run (for a scheduler), after the checks; records each run so that `gather` (the
        plan's --report-only) accepts what the commands write."""
        self.check(specs)
        states = {s.name: self._state(s) for s in specs}
        lines = []
        for spec in specs:
            if states[spec.name] == 'finished':
                continue
            self._write_record(spec)
            env = f'OMP_NUM_THREADS={self.threads} HF_HUB_OFFLINE=1 ' if self.threads else 'HF_HUB_OFFLINE=1 '
            lines.append(env + shlex.join(self.command_of(spec)))
        return lines

    def _write_record(self, spec: RunSpec) -> None:
        folder = self.out / 'runs' / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (RECORD + '.tmp')
        tmp.write_text(json.dumps(self.record(spec), indent=1))
        os.replace(tmp, folder / RECORD)

    def gather(self, specs: Sequence[RunSpec]) -> Tuple[Dict[str, RunResult], List[str]]:
        """({name: result} of the finished runs, names of those not finished): reads, writes nothing."""
        done, missing = {}, []
        for spec in specs:
            if self._state(spec) == 'finished':
                done[spec.name] = self._result(spec, reused=True)
            else:
                missing.append(spec.name)
        return done, missing

    def _result(self, spec: RunSpec, reused: bool, wall_s: Optional[float] = None) -> RunResult:
        folder = self.out / 'runs' / spec.name
        results = json.loads((folder / 'results.json').read_text())
        if results.get('last_k_mean_top1') is None:
            raise RunnerError(f'run {spec.name} has no eval top-1 in {folder}/results.json: was evaluation off?')
        return RunResult(spec, folder, results, reused, wall_s)

    def run(self, specs: Sequence[RunSpec]) -> Dict[str, RunResult]:
        """Train every spec not finished before (`workers` at a time, seed by seed so that an interrupted plan
        holds whole seeds, cheapest first within a seed), resuming interrupted ones; returns {name: result} for all
        of them. SIGINT/SIGTERM stop every run at its next safe point (train.py checkpoints) and raise RunnerError
        with the command that continues."""
        resolved = self.check(specs)
        states = {s.name: self._state(s) for s in specs}
        todo = [s for s in specs if states[s.name] != 'finished']
        results = {s.name: self._result(s, reused=True) for s in specs if states[s.name] == 'finished'}
        if not todo:
            return results
        cost = {s.name: s.estimated_passes(resolved[s.name], sum(self.identity(s)['train']['classes'].values()),
                                           len(self.identity(s)['train']['classes'])) for s in todo}
        todo.sort(key=lambda s: (s.seed, cost[s.name]))
        self.emit(f'runner: {len(todo)} runs to train ({len(results)} finished before), {self.workers} at a time, '
                  f'in {self.out}')
        progress = _Progress(self, [cost[s.name] for s in todo])
        queue, failures = list(todo), []

        def worker(slot: int) -> None:
            while self._stop is None and not failures:
                with self._write_lock:
                    if not queue:
                        return
                    spec = queue.pop(0)
                index = progress.start(spec, states[spec.name])
                try:
                    wall_s = self._train(spec, slot, resume=states[spec.name] == 'interrupted')
                    if self._stop is not None:
                        return
                    results[spec.name] = self._result(spec, reused=False, wall_s=wall_s)
                    progress.finish(index, spec, results[spec.name], cost[spec.name])
                except RunnerError as e:
                    failures.append(e)

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(self.workers)]
        with self._signals():
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.2)
        if self._stop is not None:
            raise RunnerError(f'interrupted ({signal.Signals(self._stop).name}): the runs in flight stopped at a '
                              f'checkpoint; continue with:\n  {self.command}', code=128 + self._stop)
        if failures:
            raise failures[0]
        return results

    def _train(self, spec: RunSpec, slot: int, resume: bool) -> float:
        folder = self.out / 'runs' / spec.name
        if not resume:
            self._write_record(spec)
        log_path = self.out / 'logs' / f'{spec.name}.log'
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = self.command_of(spec)
        self.emit(f'[{spec.name}] $ {shlex.join(cmd)}')
        tail, start = [], time.perf_counter()
        with open(log_path, 'a') as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                    env=self._env(spec, slot), start_new_session=True)
            self._children[spec.name] = proc
            try:
                for line in proc.stdout:
                    line = line.rstrip('\n')
                    self.emit(f'[{spec.name}] {line}')
                    log.write(line + '\n')
                    tail = (tail + [line])[-12:]
                code = proc.wait()
            finally:
                self._children.pop(spec.name, None)
        if self._stop is not None:
            return time.perf_counter() - start
        if code != 0:
            raise RunnerError(f'run {spec.name} failed (train.py exit code {code}; log {log_path}); its last lines:\n'
                              + '\n'.join(tail), code=2 if code == 2 else 1)
        if not (folder / 'results.json').is_file():
            raise RunnerError(f'run {spec.name} ended without {folder}/results.json: does '
                              f'{shlex.join(cmd[:3])} write this project\'s outputs?', code=1)
        return time.perf_counter() - start

    def _env(self, spec: RunSpec, slot: int) -> Dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        env.setdefault('HF_HUB_OFFLINE', '1')  # runs are local; never reach for the hub
        if self.threads:
            env.update(OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        devices = _cuda_count() if option_value(spec.extra, 'device', '').startswith('cuda') else 0
        if devices > 1 and 'CUDA_VISIBLE_DEVICES' not in os.environ:
            env['CUDA_VISIBLE_DEVICES'] = str(slot % devices)
        return env

    def _signals(self):
        runner = self

        class _Handler:
            def __enter__(self):
                self.previous = {}
                if threading.current_thread() is threading.main_thread():
                    self.previous = {s: signal.signal(s, self.stop) for s in (signal.SIGINT, signal.SIGTERM)}

            def stop(self, signum, frame):
                runner._stop = signum
                runner.emit(f'runner: {signal.Signals(signum).name}: stopping the runs in flight at a checkpoint')
                for proc in list(runner._children.values()):
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)  # train.py checkpoints, then exits

            def __exit__(self, *exc):
                for s, h in self.previous.items():
                    signal.signal(s, h)
        return _Handler()


def option_value(argv: Sequence[str], dest: str, default=None):
    """The value the arguments give `dest` (as train.py parses them), else `default`."""
    if dest not in _given(argv):
        return default
    args, _ = parse_args(['_'] + list(argv))
    return getattr(args, dest)


def _cuda_count() -> int:
    import torch
    return torch.cuda.device_count()


class _Progress:
    """`run k of N`, elapsed time and an ETA from the seconds per estimated image pass of the runs done so far."""

    def __init__(self, runner: Runner, costs: List[float]):
        self.runner, self.total, self.remaining = runner, len(costs), sum(costs)
        self.started = self.finished = 0
        self.t0 = time.perf_counter()
        self.spent_cost = self.spent_s = 0.0

    def _clock(self) -> str:
        elapsed = time.perf_counter() - self.t0
        text = f'elapsed {_duration(elapsed)}'
        if self.spent_cost:
            eta = self.remaining * self.spent_s / self.spent_cost / min(self.runner.workers, max(1, self.total -
                                                                                                   self.finished))
            text += f', ETA {_duration(eta)}'
        return text

    def start(self, spec: RunSpec, state: str) -> int:
        with self.runner._write_lock:
            self.started += 1
            index = self.started
        how = 'continues (interrupted before: --resume auto)' if state == 'interrupted' else 'starts'
        self.runner.emit(f'runner: run {index} of {self.total}: {spec.name} {how} ({self._clock()})')
        return index

    def finish(self, index: int, spec: RunSpec, result: RunResult, cost: float) -> None:
        with self.runner._write_lock:
            self.finished += 1
            self.remaining -= cost
            self.spent_cost += cost
            self.spent_s += result.wall_s or 0.0
        self.runner.emit(f'runner: run {index} of {self.total} done: {spec.name}: top-1 {result.top1:.2f} in '
                         f'{_duration(result.wall_s or 0)} ({self.finished}/{self.total} done, {self._clock()})')


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f'{seconds}s'
    if seconds < 3600:
        return f'{seconds // 60}m{seconds % 60:02d}s'
    return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
