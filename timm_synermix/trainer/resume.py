"""Resuming a run: `--resume auto`, the check that a resume keeps what the run is, timm's task resume, the loop's
state (position, history, scheduler, sampler, RNG) and the command that continues an interrupted run."""
import logging
import os
import shlex
import signal
import sys

from .args import PROG
from .checkpoint import newest_good_checkpoint
from .config import identity_changes
from .errors import InputError, first_line
from .loaders import LoaderEpochs
from .state import RngState

__all__ = ['resolve_auto_resume', 'check_resumed_settings', 'resume_task', 'restore_state', 'resume_command',
           'interrupted_line']

_logger = logging.getLogger('train')


def resolve_auto_resume(args, output_dir) -> str:
    """The checkpoint --resume names: with auto, the experiment folder's newest good one, or '' (a fresh start)."""
    if args.resume != 'auto':
        return args.resume
    if not args.experiment:
        raise InputError('--resume auto resumes the experiment folder of --experiment: pass --experiment NAME')
    good = newest_good_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    _logger.info(f'--resume auto: {"resuming " + good if good else "no checkpoint in " + output_dir + ", starting"}')
    return good or ''


def check_resumed_settings(args, ckpt, keys) -> None:
    """A resumed run keeps what it is: every option among `keys` the checkpoint recorded, except those a resume may
    change (`config.RESUMABLE`: --epochs, the optimisation, paths, logging, execution)."""
    saved = (ckpt or {}).get('args')
    if saved is None:
        return
    changed = identity_changes(saved, args, keys)
    if changed:
        raise InputError(f'--resume {args.resume!r} continues a run, and this command changes what it is '
                         f'({", ".join(changed)}): its results would mix both; resume with the checkpoint\'s '
                         f'settings, or start a new run from its weights with --initial-checkpoint')


def resume_task(args, task, optimizer, loss_scaler, ckpt):
    """(epoch to resume at or None, the checkpoint's training state): timm's task resume for the weights."""
    from timm.task import resume_task_checkpoint
    if not args.resume:
        return None, {}
    try:
        resume_epoch = resume_task_checkpoint(
            task, args.resume, optimizer=None if args.no_resume_opt else optimizer,
            loss_scaler=None if args.no_resume_opt else loss_scaler, log_info=args.rank == 0)
    except RuntimeError as e:
        raise InputError(f'--resume {args.resume!r} does not fit this run ({first_line(e)}): '
                         f'use the same --model/--num-classes as the checkpoint')
    saved = ckpt.get('synermix') or {}
    if saved.get('next_batch') is not None:
        resume_epoch = saved['epoch']  # a recovery checkpoint: finish the interrupted epoch
    return resume_epoch, saved


def restore_state(args, state, saved, resume_epoch, updates_per_epoch, saved_epochs):
    """(start epoch, start batch): `state` as the checkpoint left it, the scheduler at the start epoch.

    A resume with another --epochs keeps the new schedule (as timm: the LR curve stretches or shrinks to the new
    length) instead of the checkpoint's, which would end at the old length.
    """
    start_epoch = args.start_epoch if args.start_epoch is not None else (resume_epoch or 0)
    if saved:
        same_schedule = saved_epochs == args.epochs
        if not same_schedule:
            _logger.info(f'--epochs {args.epochs} (the checkpoint was scheduled for {saved_epochs}): the LR follows '
                         f'the new schedule from epoch {start_epoch}')
        state.load_state_dict(saved, load_scheduler=same_schedule and not args.no_resume_opt)
    state.history.drop_from(start_epoch)
    if state.scheduler is not None and start_epoch > 0:
        if args.sched_on_updates:
            state.scheduler.step_update(start_epoch * updates_per_epoch)
        else:
            state.scheduler.step(start_epoch)
    start_batch = saved.get('next_batch') or 0
    _check_start_batch(args, state.sampler, start_batch)
    _restore_rng(state, saved, start_batch)
    return start_epoch, start_batch


def _check_start_batch(args, sampler, start_batch: int) -> None:
    """Checked here, not in validation.py: the batch count is known only once the data and sampler exist."""
    if start_batch and isinstance(sampler, LoaderEpochs):
        raise InputError(f'--resume {args.resume!r} stopped mid-epoch, and timm\'s loader here cannot skip to batch '
                         f'{start_batch}: resume from an epoch checkpoint (last.pth.tar or checkpoint-N.pth.tar)')
    if start_batch > sampler.num_batches:
        raise InputError(f'--resume {args.resume!r} stopped at batch {start_batch} of an epoch, and the training '
                         f'set now gives {sampler.num_batches} batches per epoch: the data changed since the '
                         f'checkpoint; resume with the data it was trained on')


def _restore_rng(state, saved, start_batch: int) -> None:
    """Epoch checkpoint: restored now. Mid-epoch: restored by the loop once the loader's iterator drew its seed,
    as after the last trained batch."""
    rng = state.rng.own(saved.get('rng_all'))
    if saved.get('rng_all') and rng is None:
        _logger.warning('RNG state not restored: the world size changed since the checkpoint.')
    elif rng is not None:
        state.resume_rng = rng if start_batch else None
        if not start_batch:
            RngState.restore(rng)


def resume_command(argv, checkpoint) -> str:
    """This run's command line with --resume CHECKPOINT (replacing any --resume given)."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == '--resume':
            skip = True
        elif not a.startswith('--resume='):
            kept.append(a)
    runner = ['python', PROG] if os.path.basename(sys.argv[0]) == PROG else ['python', '-m', 'timm_synermix.trainer']
    return shlex.join([*runner, *kept, '--resume', str(checkpoint)])


def interrupted_line(argv, e, output_dir) -> str:
    """The line a signal's stop prints: the checkpoint it wrote, or the last good one, and how to continue."""
    name = signal.Signals(e.signum).name
    if e.checkpoint:
        return (f'{PROG}: stopped by {name} after a resumable checkpoint, no final results written; continue with: '
                f'{resume_command(argv, e.checkpoint)}')
    good = newest_good_checkpoint(output_dir)
    how = f'continue from the last good checkpoint with: {resume_command(argv, good)}' if good else \
        'no checkpoint was written yet: rerun the same command'
    return f'{PROG}: stopped at once by a second {name}, no final results written; {how}'
