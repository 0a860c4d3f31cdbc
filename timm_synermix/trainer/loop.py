"""The training loop: each update is step -> log -> checkpoint; each epoch ends with evaluation and a save.

`Run` holds what `main` assembled. Loss terms accumulate on the device (`LossMeters`) and are read only at
log intervals, where a non-finite loss stops every rank, naming the step.
"""
import logging
import os
import time
from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from timm import utils
from timm.task.evaluator import evaluation_sample_limit

from .errors import AgreedError, InputError, first_line
from .checkpoint import atomic_write, newest_good_checkpoint
from .loaders import continue_eval_workers
from .outputs import write_summary
from .state import RngState, TrainingState

__all__ = ['Run', 'StopRequest', 'TrainingInterrupted', 'train_one_epoch', 'evaluate', 'train_and_evaluate',
           'stop_on_write_error']

_logger = logging.getLogger('train')


class TrainingInterrupted(Exception):
    """Ctrl-C or SIGTERM stopped training at a safe point, after writing a resumable checkpoint."""

    def __init__(self, signum: int, checkpoint: Optional[str]):
        super().__init__(signum, checkpoint)
        self.signum, self.checkpoint = signum, checkpoint


class StopRequest:
    """Signal handler for Ctrl-C / SIGTERM: remembered, acted on after the next optimizer update, or at the end of
    training when it came during the last epoch's evaluation or save.

    A second signal interrupts at once. Under torch.distributed the ranks agree at log intervals (one
    all-reduce there), so they stop at the same step. Once training is saved (`after_training`), a signal
    stops the final writes at once, naming the checkpoint that resumes them.
    """

    def __init__(self):
        self.signum = 0
        self.resume_from = None  # set by after_training

    def __call__(self, signum, frame) -> None:
        if self.resume_from is not None:
            raise TrainingInterrupted(signum, self.resume_from)
        if self.signum:
            raise TrainingInterrupted(signum, None)  # no safe point waited for: main names the last good one
        self.signum = signum

    def after_training(self, checkpoint: Optional[str]) -> None:
        self.resume_from = checkpoint or ''

    def agreed(self, run: 'Run', at_log: bool) -> int:
        if not run.args.distributed:
            return self.signum
        if not at_log:
            return 0
        flag = torch.tensor([self.signum], device=run.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())


@dataclass
class Run:
    """A training run as `main` assembled it: settings, task, optimisation, data, state and saver."""
    args: Any
    device: torch.device
    task: Any
    optimizer: Any
    scheduler: Any
    loss_scaler: Any
    autocast: Callable
    loader_train: Any
    loader_eval: Any
    sampler: Any
    state: TrainingState
    saver: Any
    updates_per_epoch: int
    output_dir: str
    args_yaml: Optional[str] = None  # rewritten with each checkpoint (a resumed run's new settings)
    stop: Optional[StopRequest] = None
    num_epochs: Optional[int] = None  # the scheduled epochs (--epochs plus e.g. --cooldown-epochs)
    loop_mixup: Optional[Callable] = None  # for a task that does not mix (timm's distillation), as timm's loop
    mixup_switches: Sequence[Any] = ()  # what --mixup-off-epoch turns off (`tasks.mixup_switches`)
    batch_size_reference: float = 0.0  # the batch --variable-batch-loss-scale compares with (`reference_batch_size`)
    wandb: bool = False  # logging to Weights & Biases (--log-wandb, and wandb importable)

    @property
    def primary(self) -> bool:
        return self.args.rank == 0


def _to_device(run: Run, input, target):
    """Move a batch (one tensor, or both views) to the device and --model-dtype (unless the prefetcher did) and apply
    channels_last."""
    if not run.args.prefetcher:
        input = input.to(device=run.device, dtype=run.args.model_dtype_torch, non_blocking=True)
        target = target.to(device=run.device, non_blocking=True)
    if run.args.channels_last:
        input = input.contiguous(memory_format=torch.channels_last)
    return input, target


def _backward(run: Run, loss: torch.Tensor, need_update: bool) -> None:
    args = run.args
    clip_parameters = None
    if args.clip_grad is not None:
        clip_parameters = run.task.get_clip_parameters(exclude_head='agc' in args.clip_mode)
    if run.loss_scaler is not None:
        run.loss_scaler(loss, run.optimizer, clip_grad=args.clip_grad, clip_mode=args.clip_mode,
                        parameters=clip_parameters, need_update=need_update)
        return
    loss.backward()
    if need_update:
        if args.clip_grad is not None:
            utils.dispatch_clip_grad(clip_parameters, value=args.clip_grad, mode=args.clip_mode)
        run.optimizer.step()


def _variable_batch_scale(run: Run, batch_size: int) -> float:
    """timm's --variable-batch-loss-scale under scheduled resolutions: the batch against the schedule's average."""
    args = run.args
    if not args.train_img_sizes or args.variable_batch_loss_scale == 'none':
        return 1.0
    scale = batch_size / run.batch_size_reference
    return scale ** 0.5 if args.variable_batch_loss_scale == 'sqrt' else scale


def train_step(run: Run, input, target, *, accum_steps: int, need_update: bool) -> Dict[str, torch.Tensor]:
    """Forward and backward of one batch (the optimizer steps when `need_update`); no host sync.

    result['loss'] stays the batch's loss; result['loss_logged'] is what timm's meter records for it: the loss
    divided by `accum_steps` for the backward, times `accum_steps` again in float64 (timm: `item() * accum`).
    """
    # Between updates of an accumulation, DDP skips the gradient all-reduce.
    sync = run.task.no_sync() if run.args.distributed and not need_update else nullcontext()
    if run.loop_mixup is not None:  # a timm task (distillation) does not mix: mixed here, as timm's loop does
        input, target = run.loop_mixup(input, target)
    with sync:
        with run.autocast():
            result = run.task(input, target)
        loss = result['loss'] / accum_steps if accum_steps > 1 else result['loss']
        scale = _variable_batch_scale(run, target.shape[0])
        _backward(run, loss * scale if scale != 1.0 else loss, need_update)
    result['loss_logged'] = result['loss'] if accum_steps == 1 else \
        loss.detach().to(run.state.meters.sums.dtype) * accum_steps
    return result


def _resume_hint(run: Run):
    """(what is kept, how to go on) after a run stopped mid-training."""
    # The newest, not last.pth.tar: a recovery checkpoint may be newer, and a folder holding one refuses a rerun.
    good = newest_good_checkpoint(run.output_dir) if os.path.isdir(run.output_dir) else None
    if good:
        return f'the last good checkpoint, {good!r}, is kept', f'continue with --resume {good}'
    return 'no checkpoint was written yet', 'rerun the same command'


@contextmanager
def stop_on_write_error(run: Run, what: str):
    """A write that fails (a full disk, a folder made read-only) stops the run in one line; every file is written
    atomically, so the last good checkpoint is whole and kept."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        # torch.save reports a full disk as a RuntimeError raised while handling the OSError.
        cause = next((c for c in (e, e.__cause__, e.__context__) if isinstance(c, OSError)), None)
        if cause is None or cause.errno is None:  # e.g. PIL's unreadable image while the final features are read
            raise
        keep, then = _resume_hint(run)
        raise InputError(f'could not write {what} in {run.output_dir!r} ({cause.strerror}); training stopped and '
                         f'{keep}: free space or fix the folder, then {then}') from e


def _read_batches(run: Run, loader, where: str):
    """`loader`'s batches, its iterator made now (it draws its seed here). Images the dataset cannot read, which
    timm's dataset skips with a warning until several come in a row, stop the run in one line."""
    iterator = iter(loader)

    def batches():
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except (OSError, SyntaxError, RuntimeError) as e:
                if isinstance(e, RuntimeError) and 'consecutive samples' not in str(e):
                    raise
                keep, then = _resume_hint(run)
                # A loader worker's error carries the worker's traceback: name the error it ends with.
                why = first_line(e, prefer=('Failed to load', 'RuntimeError: Failed', 'OSError:', 'PIL.'))
                raise InputError(f'images could not be read in {where} ({why}); training stopped and '
                                 f'{keep}: fix or remove the files named in the "Skipped sample" warnings, then '
                                 f'{then}') from e
            yield batch
    return batches()


def _check_finite(run: Run, epoch: int) -> Dict[str, float]:
    """Read the meters (every rank together); stop all ranks if a loss was not finite."""
    values = run.state.meters.read(distributed=run.args.distributed)
    if values['first_bad_step'] >= 0:
        keep, then = _resume_hint(run)
        raise AgreedError(f'loss is not finite at epoch {epoch}, step {values["first_bad_step"]}; training stopped '
                         f'and {keep}: lower --lr or set --clip-grad, then {then}')
    return values


class _Clock:
    """Update and data-loading times (host clock, as timm's loop)."""

    def __init__(self):
        self.update_start = self.data_start = time.time()
        self.update_sum = self.data_sum = 0.0
        self.updates, self.samples, self.update_val, self.data_val = 0, 0, 0.0, 0.0

    def data_ready(self, accum_steps: int) -> None:
        self.data_val = accum_steps * (time.time() - self.data_start)
        self.data_sum += self.data_val

    def updated(self) -> None:
        now = time.time()
        self.update_val = now - self.update_start
        self.update_sum += self.update_val
        self.updates += 1
        self.update_start = now


def _log_train(run: Run, epoch: int, update_idx: int, clock: _Clock, input, batch_idx: int) -> None:
    values = _check_finite(run, epoch)
    if not run.primary:
        return
    if run.args.save_images:  # as timm: the training batch at each log step (the augmented view, before mixing)
        import torchvision.utils
        torchvision.utils.save_image(input.float(), os.path.join(run.output_dir, f'train-batch-{batch_idx}.jpg'),
                                     padding=0, normalize=True)
    lrs = [g['lr'] for g in run.optimizer.param_groups]
    update_avg = clock.update_sum / max(clock.updates, 1)
    total = run.updates_per_epoch
    _logger.info(
        f'Train: {epoch} [{update_idx:>4d}/{total} ({100. * (update_idx + 1) / total:>3.0f}%)]  '
        f'Loss: {values["last_loss"]:#.3g} ({values["loss"]:#.3g})  '
        f'Intra: {values["last_intra"]:#.3g} ({values["loss_intra"]:#.3g})  '
        f'Inter: {values["last_inter"]:#.3g} ({values["loss_inter"]:#.3g})  '
        f'Batch: {int(values["last_batch"])} ({values["batch"]:.1f})  '
        f'Time: {clock.update_val:.3f}s, {clock.samples / max(clock.update_val, 1e-9):>7.2f}/s  '
        f'({update_avg:.3f}s, {clock.samples / max(update_avg, 1e-9):>7.2f}/s)  '
        f'LR: {sum(lrs) / len(lrs):.3e}  '
        f'Data: {clock.data_val:.3f} ({clock.data_sum / max(clock.updates, 1):.3f})')


def _save_recovery(run: Run, epoch: int, next_batch: int, num_updates: int, update_idx: int) -> None:
    _check_finite(run, epoch)
    with run.state.mid_epoch(epoch=epoch, next_batch=next_batch, num_updates=num_updates):
        if run.args.distributed:
            run.state.snapshot()
        if run.saver is not None:
            with stop_on_write_error(run, f'the recovery checkpoint of epoch {epoch}, step {update_idx}'):
                run.saver.save_recovery(epoch, batch_idx=update_idx)


def train_one_epoch(run: Run, epoch: int, start_batch: int = 0) -> Dict[str, float]:
    """Train one epoch from batch `start_batch` (a mid-epoch resume); returns the mean loss terms."""
    args, task = run.args, run.task
    if args.mixup_off_epoch and epoch >= args.mixup_off_epoch:
        for switch in run.mixup_switches:
            switch.mixup_enabled = False
    task.train()
    accum = args.grad_accum_steps
    num_batches = start_batch + len(run.loader_train)
    last_accum_steps = num_batches % accum
    num_updates = epoch * run.updates_per_epoch + start_batch // accum
    clock = _Clock()
    run.optimizer.zero_grad()
    zero = torch.zeros((), device=run.device)
    batches = enumerate(_read_batches(run, run.loader_train, f'epoch {epoch}'), start=start_batch)
    if run.state.resume_rng is not None:
        RngState.restore(run.state.resume_rng)
        run.state.resume_rng = None
    for batch_idx, (input, target) in batches:
        last_batch = batch_idx == num_batches - 1
        need_update = last_batch or (batch_idx + 1) % accum == 0
        accum_steps = last_accum_steps if batch_idx >= num_batches - last_accum_steps else accum
        input, target = _to_device(run, input, target)
        clock.data_ready(accum_steps)
        n_batch = input.shape[0]  # AugMix splits included

        result = train_step(run, input, target, accum_steps=accum_steps, need_update=need_update)
        # timm's own tasks report no intra term: their whole loss is the inter (augmented-view) loss.
        # The task counts its own images through forward+backward; timm's tasks pass the batch once.
        run.state.meters.update(result['loss_logged'], result.get('loss_intra', zero),
                                result.get('loss_inter', result['loss']), n_batch, result.get('with_intra', False),
                                batch_idx, result.get('image_passes', n_batch))
        clock.samples += n_batch * args.world_size  # the supplemented size: what the step really processed
        if not need_update:
            clock.data_start = time.time()
            continue

        num_updates += 1
        run.optimizer.zero_grad()
        task.update_ema(step=num_updates)
        if args.synchronize_step and run.device.type == 'cuda':
            torch.cuda.synchronize()
        clock.updated()
        update_idx = batch_idx // accum
        at_log = update_idx % args.log_interval == 0 or last_batch
        if at_log:
            _log_train(run, epoch, update_idx, clock, input, batch_idx)
        if args.recovery_interval and (update_idx + 1) % args.recovery_interval == 0 and not last_batch:
            _save_recovery(run, epoch, batch_idx + 1, num_updates, update_idx)
        if run.scheduler is not None:
            run.scheduler.step_update(num_updates=num_updates)
        signum = run.stop.agreed(run, at_log) if run.stop is not None else 0
        if signum:
            _save_recovery(run, epoch, batch_idx + 1, num_updates, update_idx)
            raise TrainingInterrupted(signum, run.saver.curr_recovery_file if run.saver is not None else None)
        clock.samples = 0
        clock.data_start = time.time()

    if hasattr(run.optimizer, 'sync_lookahead'):
        run.optimizer.sync_lookahead()
    values = _check_finite(run, epoch)
    metrics = OrderedDict((k, values[k]) for k in ('loss', 'loss_intra', 'loss_inter'))
    metrics['image_passes'] = int(values['image_passes'])
    return metrics


def evaluate(run: Run, model: torch.nn.Module, log_suffix: str = '') -> Dict[str, float]:
    """Loss, top-1 and top-5 of `model` on the eval loader, with timm's task evaluator (exact under DDP)."""
    args, loader = run.args, run.loader_eval
    dtype, evaluator_kwargs = args.model_dtype_torch, {}
    if dtype not in (None, torch.float32):
        # timm's validate takes the loss of the output in the model's dtype (--model-dtype bfloat16); the evaluator
        # casts the output to float32 first, which holds every value of the narrower dtype, so the cast back is exact.
        evaluator_kwargs['criterion'] = lambda out, target: torch.nn.functional.cross_entropy(out.to(dtype), target)
    evaluator = run.task.create_evaluator(max_samples=evaluation_sample_limit(loader), **evaluator_kwargs)
    continue_eval_workers(args, loader, evaluated=bool(run.state.history.rows))
    model.eval()
    last_idx = len(loader) - 1
    with torch.inference_mode():
        for batch_idx, (input, target) in enumerate(_read_batches(run, loader, 'evaluation')):
            input, target = _to_device(run, input, target)
            with run.autocast():
                output = model(input)
            if isinstance(output, (tuple, list)):
                output = output[0]
            evaluator.update(output, target)
            if run.primary and (batch_idx == last_idx or batch_idx % args.log_interval == 0):
                m = evaluator.summary()
                _logger.info(f'Test{log_suffix}: [{batch_idx:>4d}/{last_idx}]  Loss: ({m["loss"]:>6.3f})  '
                             f'Acc@1: ({m["top1"]:>7.3f})  Acc@5: ({m["top5"]:>7.3f})')
    return evaluator.compute(distributed=args.distributed)


def _evaluate_epoch(run: Run) -> Optional[Dict[str, float]]:
    args, task = run.args, run.task
    if run.loader_eval is None:
        return None
    metrics = evaluate(run, task.get_eval_model())
    if task.has_ema() and not args.model_ema_force_cpu:
        if args.distributed and args.dist_bn in ('broadcast', 'reduce'):
            utils.distribute_bn(task.get_trainable_module(ema=True), args.world_size, args.dist_bn == 'reduce')
        metrics = evaluate(run, task.get_eval_model(ema=True), log_suffix=' (EMA)')
    return metrics


def _end_epoch(run: Run, epoch: int, train_metrics: Dict[str, float], seconds: float, num_epochs: int) -> None:
    """Evaluate, record the epoch, step the scheduler, save the checkpoint and summary.csv."""
    args, state = run.args, run.state
    if args.distributed and args.dist_bn in ('broadcast', 'reduce'):
        utils.distribute_bn(run.task.get_trainable_module(), args.world_size, args.dist_bn == 'reduce')
    milestone = bool(args.save_epochs) and epoch + 1 in args.save_epochs
    last = epoch + 1 in (num_epochs, args.stop_epoch)
    if (epoch + 1) % args.val_interval and not (last or milestone):  # timm: no eval, no checkpoint this epoch
        if run.primary:
            _logger.info('Skipping eval and checkpointing (--val-interval)')
        if run.scheduler is not None:
            run.scheduler.step(epoch + 1, metric=None)
        return
    eval_metrics = _evaluate_epoch(run)
    lrs = [g['lr'] for g in run.optimizer.param_groups]
    row = OrderedDict(epoch=epoch)
    row.update(('train_' + k, v) for k, v in train_metrics.items())
    row['train_seconds'] = seconds
    row.update(('eval_' + k, (eval_metrics or {}).get(k)) for k in ('loss', 'top1', 'top5'))
    row['lr'] = sum(lrs) / len(lrs)
    state.history.append(row)
    metric_name = args.eval_metric if eval_metrics is not None else 'loss'
    latest = (eval_metrics or train_metrics)[metric_name]
    if run.scheduler is not None:
        run.scheduler.step(epoch + 1, latest)
    state.position.epoch, state.position.next_batch = epoch, None
    state.position.num_updates = (epoch + 1) * run.updates_per_epoch
    if args.distributed:
        state.snapshot()
    if run.saver is not None:
        # The checkpoint first: summary.csv and args.yaml never describe an epoch last.pth.tar does not hold.
        with stop_on_write_error(run, f'the checkpoint of epoch {epoch}'):
            run.saver.save_checkpoint(epoch, metric=latest)
            if milestone:
                run.saver.save_milestone(epoch, metric=latest)
            if run.args_yaml is not None:
                atomic_write(os.path.join(run.output_dir, 'args.yaml'), lambda f: f.write(run.args_yaml), mode='w')
            write_summary(os.path.join(run.output_dir, 'summary.csv'), state.history.rows)
        if run.wandb:
            import wandb
            wandb.log(dict(row))
    state.rng_states = None


def train_and_evaluate(run: Run, start_epoch: int, num_epochs: int, start_batch: int = 0) -> None:
    """Epochs `start_epoch`..`num_epochs - 1`; the first may start mid-epoch at `start_batch`."""
    # --stop-epoch ends early without shortening the schedule (the LR follows --epochs).
    for epoch in range(start_epoch, min(num_epochs, run.args.stop_epoch or num_epochs)):
        first = start_batch if epoch == start_epoch else 0
        run.sampler.set_epoch(epoch, start_batch=first)
        if not first:
            run.state.meters.reset()
        started = time.time()
        train_metrics = train_one_epoch(run, epoch, start_batch=first)
        seconds = time.time() - started
        position = run.state.position
        position.epochs_done, position.train_seconds = epoch + 1, position.train_seconds + seconds
        position.image_passes += train_metrics['image_passes']
        run.sampler.set_epoch(epoch + 1)
        _end_epoch(run, epoch, train_metrics, seconds, num_epochs)
    # A signal during the last epoch's evaluation or save: its checkpoint holds the whole training, and a resume
    # from it writes the final outputs.
    signum = run.stop.agreed(run, at_log=True) if run.stop is not None else 0
    if signum:
        raise TrainingInterrupted(signum, os.path.join(run.output_dir, 'last.pth.tar') if run.primary else None)
