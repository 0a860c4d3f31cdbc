"""train.py: timm's training script with SynerMix. `main(argv)` reads top-down; each step is a function below.

    python train.py DATA_DIR --model resnet18 --method synermix --synermix-beta 0.1
    python -m timm_synermix.trainer -c configs/cifar100_resnet18.yaml --method synermix-intra
    torchrun --nproc_per_node=2 train.py DATA_DIR --model resnet50 --method synermix

Reliability: checkpoints are written atomically and carry everything an exact resume needs (model, optimizer,
scheduler, EMA, AMP scaler, task step, sampler position, RNG states); bad input fails before anything is
written, with one line naming the problem and the fix (exit code 2; --debug shows the traceback); a NaN/inf
loss stops every rank within one log interval, keeping the last good checkpoint; under torchrun a dead or hung
rank fails the others within --dist-timeout seconds.

Outputs (as timm): <output>/train/<experiment>/{args.yaml, summary.csv, last.pth.tar, checkpoint-N.pth.tar,
model_best.pth.tar}, plus results.json, features.npz and model_best.safetensors.
"""
import importlib
import json
import logging
import os
import signal
import sys
import threading
from contextlib import contextmanager, suppress
from functools import partial

import torch

from ..method.sampler import dataset_labels
from .args import PROG, given_options, option_defaults, parse_args
from .checkpoint import create_saver, load_training_checkpoint
from .config import apply_method, args_to_yaml, inter_name, parser_dests, settle
from .data import class_names, create_datasets, num_classes_from_data
from .distributed import init_distributed_device, report_to_torchrun
from .errors import AgreedError, InputError, first_line
from .loaders import create_eval_loader, create_train_loader, create_train_sampler, reference_batch_size
from .lock import ExperimentLock
from .loop import Run, StopRequest, TrainingInterrupted, stop_on_write_error, train_and_evaluate
from .models import create_run_model
from .optim import create_optimizer, create_scheduler, scaled_lr
from .outputs import init_wandb, write_final_outputs
from .resume import check_resumed_settings, interrupted_line, resolve_auto_resume, restore_state, resume_task
from .state import LossMeters, RngState, TrainingState
from .tasks import check_teacher_head, create_task, mixup_switches, prepare_task
from .validation import check_args, check_no_effect, check_output_dir, check_output_path

__all__ = ['main']

_logger = logging.getLogger('train')

DEFAULT_OUTPUT = './output/train'  # timm's


def main(argv=None) -> int:
    """Run train.py with `argv` (default: sys.argv[1:]); bad input exits with code 2 and one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return train(argv)
    except KeyboardInterrupt:  # Ctrl-C before training started (training itself stops at a safe point)
        sys.stderr.write(f'{PROG}: interrupted before training started, nothing to resume: rerun the same command\n')
        sys.exit(130)
    except InputError as e:
        if '--debug' in argv:
            raise
        # One write of the whole line: under torchrun every rank prints to one pipe, and a write of under
        # PIPE_BUF bytes is not interleaved with another rank's.
        sys.stderr.write(f'{PROG}: error: {e}\n')
        sys.stderr.flush()
        report_to_torchrun(f'{PROG}: error: {e}')
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if isinstance(e, AgreedError):
                torch.distributed.barrier()  # every rank has printed it before torchrun stops the rest
            torch.distributed.destroy_process_group()
        sys.exit(2)


def train(argv) -> int:
    from timm import utils
    utils.setup_default_logging()
    args, parser = parse_args(argv)
    given = given_options(argv)
    apply_method(args, given)
    check_args(args)
    check_no_effect(args, given, option_defaults())
    args_text = args_to_yaml(args, parser_dests(parser))  # as timm: the options as given, before anything derived
    import_device_modules(args)
    args = settle(args, init_distributed_device(args))
    device, autocast, loss_scaler = setup_device(args)
    output_dir = os.path.join(args.output or DEFAULT_OUTPUT, args.experiment_name)
    check_output_path(args, output_dir, DEFAULT_OUTPUT)
    # Rank 0 holds the folder before reading it: of two runs started into one folder, the second stops here,
    # before it could overwrite the first's results.
    lock = ExperimentLock(output_dir).acquire() if args.rank == 0 else None
    try:
        args = args.replace(resume=resolve_auto_resume(args, output_dir))
        resume_ckpt = load_training_checkpoint(args.resume) if args.resume else None
        check_resumed_settings(args, resume_ckpt, parser_dests(parser))
        check_output_dir(args, output_dir)
        run, dataset_eval, data_config, start = build_run(args, args_text, device, autocast, loss_scaler,
                                                          output_dir, resume_ckpt)
        return train_run(argv, run, dataset_eval, data_config, start)
    finally:
        if lock is not None:
            lock.release()


def build_run(args, args_text, device, autocast, loss_scaler, output_dir, resume_ckpt):
    """(the assembled `Run`, the eval set, timm's data config, (start epoch, start batch)) in timm's order."""
    from timm import utils
    if args.distributed:
        torch.distributed.barrier()
    utils.random_seed(args.seed, args.rank)
    dataset_train, dataset_eval = create_datasets(args)
    streaming = isinstance(dataset_train, torch.utils.data.IterableDataset)
    labels, names = None if streaming else dataset_labels(dataset_train), class_names(dataset_train)
    args = args.replace(num_classes=num_classes_from_data(args, labels, names))
    model, data_config = create_run_model(args, device)
    task, loop_mixup = create_task(args, model, device)
    check_teacher_head(args, task)
    sampler = create_train_sampler(args, labels, names, dataset_train)
    two_views = args.synermix and args.synermix_beta > 0 and args.synermix_source == 'original'
    loader_train = create_train_loader(args, dataset_train, sampler, data_config, device, two_views)
    batch_size_reference = reference_batch_size(args, sampler)
    args = args.replace(lr=scaled_lr(args, batch_size_reference))
    # timm's distillation tasks train more than the student (e.g. a feature projection): their module, as timm.
    optimizer = create_optimizer(args, model if args.kd_model_name is None else task.get_trainable_module())
    loader_eval = create_eval_loader(args, dataset_eval, data_config, device, args.distributed) \
        if dataset_eval is not None else None

    resume_epoch, saved = resume_task(args, task, optimizer, loss_scaler, resume_ckpt)
    prepare_task(args, task, device)
    scheduler, num_epochs, updates_per_epoch = create_scheduler(args, optimizer, sampler.num_batches,
                                                                loader_eval is not None)
    state = TrainingState(sampler, scheduler, LossMeters(device), RngState(args.world_size, args.rank), args.method)
    saved_epochs = getattr((resume_ckpt or {}).get('args'), 'epochs', args.epochs)
    start = restore_state(args, state, saved, resume_epoch, updates_per_epoch, saved_epochs)
    saver = None
    if args.rank == 0:  # rank 0 holds the folder's lock
        decreasing = (args.eval_metric if loader_eval is not None else 'loss') == 'loss'
        saver = create_saver(args, task, model, optimizer, loss_scaler, state, output_dir, args_text, decreasing,
                             resume_ckpt)
    run = Run(args, device, task, optimizer, scheduler, loss_scaler, autocast, loader_train, loader_eval, sampler,
              state, saver, updates_per_epoch, output_dir, args_yaml=args_text if args.resume else None,
              stop=StopRequest(), num_epochs=num_epochs, loop_mixup=loop_mixup,
              mixup_switches=mixup_switches(task, loop_mixup, loader_train),
              batch_size_reference=batch_size_reference, wandb=args.rank == 0 and init_wandb(args))
    return run, dataset_eval, data_config, start


def train_run(argv, run, dataset_eval, data_config, start) -> int:
    """Train and write the final outputs; a signal stops at a safe point with the command that continues."""
    log_setup(run)
    try:
        with _signals_to(run.stop):
            start_epoch, start_batch = start
            train_and_evaluate(run, start_epoch, run.num_epochs, start_batch)
            run.stop.after_training(os.path.join(run.output_dir, 'last.pth.tar') if run.primary else None)
            finish(run, dataset_eval, data_config)
    except TrainingInterrupted as e:
        if run.primary:
            print(interrupted_line(argv, e, run.output_dir), file=sys.stderr)
        return 128 + e.signum
    return 0


@contextmanager
def _signals_to(handler):
    """Ctrl-C and SIGTERM call `handler` while training (main thread only, where Python delivers signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def finish(run, dataset_eval, data_config) -> None:
    """After the last epoch: results.json, features.npz and model_best.safetensors (rank 0)."""
    args = run.args
    if args.distributed:
        torch.distributed.barrier()
    if run.saver is not None:
        _logger.info(f'*** Best metric: {run.saver.best_metric} (epoch {run.saver.best_epoch})')
        full_eval = run.loader_eval if not args.distributed or run.loader_eval is None else \
            create_eval_loader(args, dataset_eval, data_config, run.device, distributed=False)
        with stop_on_write_error(run, 'the final outputs'):
            results = write_final_outputs(run, dataset_eval, full_eval, args.cifar_stem)
        _logger.info(f'Results: {json.dumps({k: v for k, v in results.items() if k != "metrics"})}')
    if args.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def import_device_modules(args) -> None:
    """Extra device backends register themselves on import, as in timm; before the process group is made.
    Checked here, not in validation.py: whether a module imports is known only by importing it."""
    for module in args.device_modules or ():
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise InputError(f'--device-modules {module}: cannot import it ({first_line(e)}): install it or drop it')


def setup_device(args):
    """(device, autocast context factory, AMP loss scaler or None), on the settled device."""
    from timm import utils
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    if args.model_dtype == 'float16':
        _logger.warning('float16 is not recommended for training, for half precision bfloat16 is recommended.')
    if args.distributed:
        _logger.info(f'Training in distributed mode with multiple processes, 1 device per process. '
                     f'Process {args.rank}, total {args.world_size}, device {args.device}.')
    else:
        _logger.info(f'Training with a single process on 1 device ({args.device}).')
    device = torch.device(args.device)
    autocast, loss_scaler = suppress, None
    if args.amp:
        dtype = torch.bfloat16 if args.amp_dtype == 'bfloat16' else torch.float16
        autocast = partial(torch.autocast, device_type=device.type, dtype=dtype)
        if device.type == 'cuda' and dtype == torch.float16:
            loss_scaler = utils.NativeScaler(device=device.type)
    return device, autocast, loss_scaler


def log_setup(run) -> None:
    args, sampler = run.args, run.sampler
    if not run.primary:
        return
    _logger.info(f'Method {args.method}: synermix={args.synermix} beta={args.synermix_beta} '
                 f'source={args.synermix_source} inter={inter_name(args)} '
                 f'batches={args.synermix_batches}')
    mode = args.synermix_batches
    if mode == 'supplemented':  # simulated only for this mode: the others have one size
        _logger.info(f'Batch size per step: {args.batch_size} before supplementation (-b counts primaries), about '
                     f'{sampler.simulated_sizes().mean():.1f} after on this data')
    elif mode == 'fixed':
        _logger.info(f'Batch size per step: {sampler.fixed_size} (-b {args.batch_size} primaries, supplemented to a '
                     f'fixed size)')
    elif mode != 'plain':
        _logger.info(f'Batch size per step: {args.batch_size} ({args.batch_size // 2} pairs of one class)')
    _logger.info(f'Scheduled epochs: {run.num_epochs}. LR stepped per '
                 f'{"epoch" if run.scheduler.t_in_epochs else "update"}.')
