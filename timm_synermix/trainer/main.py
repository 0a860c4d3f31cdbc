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
import shlex
import signal
import sys
import threading
from contextlib import contextmanager, suppress
from datetime import datetime
from functools import partial

import torch

from ..method.sampler import dataset_labels
from .args import PROG, parse_args
from .checkpoint import AtomicCheckpointSaver, atomic_write, load_training_checkpoint, newest_good_checkpoint
from .config import RUN_IDENTITY, apply_method, args_to_yaml, parser_dests
from .data import class_names, create_datasets
from .distributed import init_distributed_device
from .errors import AgreedError, InputError, first_line
from .loaders import LoaderEpochs, create_eval_loader, create_train_loader, create_train_sampler
from .lock import ExperimentLock
from .loop import Run, StopRequest, TrainingInterrupted, stop_on_write_error, train_and_evaluate
from .models import create_model_from_args
from .outputs import write_final_outputs
from .state import LossMeters, RngState, TrainingState
from .tasks import create_task
from .validation import check_args

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
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if isinstance(e, AgreedError):
                torch.distributed.barrier()  # every rank has printed it before torchrun stops the rest
            torch.distributed.destroy_process_group()
        sys.exit(2)


def train(argv) -> int:
    from timm import utils
    utils.setup_default_logging()
    args, parser = parse_args(argv)
    apply_method(args)
    check_args(args)
    args_text = args_to_yaml(args, parser_dests(parser))
    device, autocast, loss_scaler = setup_device(args)
    output_dir = experiment_dir(args)
    check_output_path(args, output_dir)
    # Rank 0 holds the folder before reading it: of two runs started into one folder, the second stops here,
    # before it could overwrite the first's results.
    lock = ExperimentLock(output_dir).acquire() if args.rank == 0 else None
    try:
        return _train_holding_folder(argv, args, args_text, device, autocast, loss_scaler, output_dir)
    finally:
        if lock is not None:
            lock.release()


def _train_holding_folder(argv, args, args_text, device, autocast, loss_scaler, output_dir) -> int:
    from timm import utils
    resolve_auto_resume(args, output_dir)
    resume_ckpt = load_training_checkpoint(args.resume) if args.resume else None
    check_resumed_settings(args, resume_ckpt)
    check_output_dir(args, output_dir)
    if args.distributed:
        torch.distributed.barrier()
    utils.random_seed(args.seed, args.rank)

    dataset_train, dataset_eval = create_datasets(args)
    streaming = isinstance(dataset_train, torch.utils.data.IterableDataset)
    labels, names = None if streaming else dataset_labels(dataset_train), class_names(dataset_train)
    set_num_classes(args, labels, names)
    model, data_config = create_model(args, device)
    task = create_task(args, model, device)
    check_teacher_head(args, task)
    sampler = create_train_sampler(args, labels, names, dataset_train)
    two_views = args.synermix and args.synermix_beta > 0 and args.synermix_source == 'original'
    loader_train = create_train_loader(args, dataset_train, sampler, data_config, device, two_views)
    # timm's distillation tasks train more than the student (e.g. a feature projection): their module, as timm.
    optimizer = create_optimizer(args, model if args.kd_model_name is None else task.get_trainable_module())
    loader_eval = create_eval_loader(args, dataset_eval, data_config, device, args.distributed) \
        if dataset_eval is not None else None

    resume_epoch, saved = resume_task(args, task, optimizer, loss_scaler, resume_ckpt)
    prepare_task(args, task, device)
    scheduler, num_epochs, updates_per_epoch = create_scheduler(args, optimizer, sampler, loader_eval)
    state = TrainingState(sampler, scheduler, LossMeters(device), RngState(args.world_size, args.rank), args.method)
    saved_epochs = getattr((resume_ckpt or {}).get('args'), 'epochs', args.epochs)
    start_epoch, start_batch = restore_state(args, state, saved, resume_epoch, updates_per_epoch, saved_epochs)
    saver = create_saver(args, task, model, optimizer, loss_scaler, state, output_dir, args_text, loader_eval,
                         resume_ckpt)
    resume_ckpt = None  # free the checkpoint's tensors before training
    run = Run(args, device, task, optimizer, scheduler, loss_scaler, autocast, loader_train, loader_eval, sampler,
              state, saver, updates_per_epoch, output_dir, args_yaml=args_text if args.resume else None,
              stop=StopRequest(), num_epochs=num_epochs)
    log_setup(run, num_epochs)
    try:
        with _signals_to(run.stop):
            train_and_evaluate(run, start_epoch, num_epochs, start_batch)
            run.stop.after_training(os.path.join(output_dir, 'last.pth.tar') if run.primary else None)
            finish(run, dataset_eval, data_config)
    except TrainingInterrupted as e:
        if run.primary:
            print(_interrupted_line(argv, e, output_dir), file=sys.stderr)
        return 128 + e.signum
    return 0


def _interrupted_line(argv, e, output_dir) -> str:
    name = signal.Signals(e.signum).name
    if e.checkpoint:
        return (f'{PROG}: stopped by {name} after a resumable checkpoint, no final results written; continue with: '
                f'{resume_command(argv, e.checkpoint)}')
    good = newest_good_checkpoint(output_dir)
    how = f'continue from the last good checkpoint with: {resume_command(argv, good)}' if good else \
        'no checkpoint was written yet: rerun the same command'
    return f'{PROG}: stopped at once by a second {name}, no final results written; {how}'


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


def setup_device(args):
    """(device, autocast context factory, AMP loss scaler or None); joins the process group under torchrun."""
    from timm import utils
    for module in args.device_modules or ():  # extra device backends register themselves on import, as in timm
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise InputError(f'--device-modules {module}: cannot import it ({first_line(e)}): install it or drop it')
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    args.prefetcher = not args.no_prefetcher
    args.grad_accum_steps = max(1, args.grad_accum_steps)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise InputError(f'--device {args.device} but CUDA is not available: pass --device cpu')
    if args.amp and args.amp_dtype not in ('float16', 'bfloat16'):
        raise InputError(f'--amp-dtype {args.amp_dtype}: use float16 or bfloat16')
    if args.model_dtype and args.model_dtype not in ('float32', 'float16', 'bfloat16'):
        raise InputError(f'--model-dtype {args.model_dtype}: use float32, float16 or bfloat16')
    if args.amp and args.model_dtype not in (None, '', 'float32'):
        raise InputError(f'--model-dtype {args.model_dtype} with --amp: AMP needs float32 weights; drop one of them')
    args.model_dtype_torch = getattr(torch, args.model_dtype) if args.model_dtype else None
    if args.model_dtype == 'float16':
        _logger.warning('float16 is not recommended for training, for half precision bfloat16 is recommended.')
    device = init_distributed_device(args)
    if args.distributed:
        _logger.info(f'Training in distributed mode with multiple processes, 1 device per process. '
                     f'Process {args.rank}, total {args.world_size}, device {args.device}.')
    else:
        _logger.info(f'Training with a single process on 1 device ({args.device}).')
    if args.sync_bn and args.distributed and device.type == 'cpu':
        raise InputError('--sync-bn needs a GPU (torch SyncBatchNorm has no CPU kernel): drop --sync-bn on CPU')
    autocast, loss_scaler = suppress, None
    if args.amp:
        dtype = torch.bfloat16 if args.amp_dtype == 'bfloat16' else torch.float16
        autocast = partial(torch.autocast, device_type=device.type, dtype=dtype)
        if device.type == 'cuda' and dtype == torch.float16:
            loss_scaler = utils.NativeScaler(device=device.type)
    return device, autocast, loss_scaler


def check_output_path(args, output_dir) -> None:
    """The experiment folder lies inside --output, below no file, where this process may write: checked before
    data and model loading, so a run never fails there after its setup."""
    root, folder = os.path.abspath(args.output or DEFAULT_OUTPUT), os.path.abspath(output_dir)
    if os.path.commonpath([root, folder]) != root:
        raise InputError(f'--experiment {args.experiment!r} leads outside --output {root!r} (to {folder!r}): '
                         f'pass a name inside it, without .. or a leading /')
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(f'output path {existing!r} is a file, not a folder: pass another --output/--experiment')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f'output folder {existing!r} is not writable (read-only, or not yours): make it writable, '
                         f'or pass another --output')


def experiment_dir(args) -> str:
    """<output>/<experiment>, the experiment named as timm names it when --experiment is not given."""
    from timm.models import safe_model_name
    exp_name = args.experiment or '-'.join([
        datetime.now().strftime('%Y%m%d-%H%M%S'), safe_model_name(args.model),
        str(args.input_size[-1] if args.input_size else (args.img_size or 'default'))])
    args.experiment_name = exp_name
    return os.path.join(args.output or DEFAULT_OUTPUT, exp_name)


def resolve_auto_resume(args, output_dir) -> None:
    """--resume auto: the experiment folder's newest good checkpoint, or a fresh start when it has none."""
    if args.resume != 'auto':
        return
    if not args.experiment:
        raise InputError('--resume auto resumes the experiment folder of --experiment: pass --experiment NAME')
    good = newest_good_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    _logger.info(f'--resume auto: {"resuming " + good if good else "no checkpoint in " + output_dir + ", starting"}')
    args.resume = good or ''


def check_resumed_settings(args, ckpt) -> None:
    """A resumed run keeps what it is (model, method, β, batches, mixing); --epochs and the optimisation may change."""
    saved = (ckpt or {}).get('args')
    if saved is None:
        return
    changed = [f'{flag} {getattr(saved, key)} -> {getattr(args, key)}' for key, flag in RUN_IDENTITY
               if hasattr(saved, key) and getattr(saved, key) != getattr(args, key)]
    if changed:
        raise InputError(f'--resume {args.resume!r} continues a run, and this command changes what it is '
                         f'({", ".join(changed)}): its results would mix both; resume with the checkpoint\'s '
                         f'settings, or start a new run from its weights with --initial-checkpoint')


def check_output_dir(args, output_dir) -> None:
    """Never write into another run: a folder holding a run is continued only by resuming its own checkpoint.

    A folder without checkpoints or results (a run that failed before its first checkpoint) is reused.
    """
    held = os.path.isdir(output_dir) and any(
        name.endswith('.pth.tar') or name == 'results.json' for name in os.listdir(output_dir))
    if not held:
        return
    if not args.resume:
        good = newest_good_checkpoint(output_dir)
        fix = f'pass --resume {good} to continue it' if good else 'remove it to start afresh'
        raise InputError(f'experiment folder {output_dir!r} holds a run: {fix}, or use another --experiment')
    resume_dir = os.path.dirname(os.path.abspath(args.resume))
    if resume_dir != os.path.abspath(output_dir):
        raise InputError(f'--resume {args.resume!r} is a checkpoint of {resume_dir!r}, but the output folder '
                         f'{output_dir!r} holds another run: resume with --experiment '
                         f'{os.path.basename(resume_dir)} (and the same --output), or a new --experiment')


def set_num_classes(args, labels, names) -> None:
    """--num-classes from the training set when not given; one that disagrees with the data is an error."""
    if not names and labels is None:  # a stream without a class map
        if args.num_classes is None:
            raise InputError(f'the streaming dataset {args.dataset!r} gives no class count up front: pass '
                             f'--num-classes')
        return
    data_classes = len(names) if names else int(labels.max()) + 1
    if args.num_classes is None:
        args.num_classes = data_classes
        _logger.info(f'--num-classes not given: {args.num_classes} from the training set.')
    elif args.num_classes > data_classes:  # allowed, as in timm (e.g. keeping a pretrained 1000-way head)
        _logger.warning(f'--num-classes {args.num_classes} but the training set has {data_classes} classes: outputs '
                        f'{data_classes}..{args.num_classes - 1} are never a target; drop --num-classes to size the '
                        f'head from the data')


def create_model(args, device):
    """(model on the device, timm data config)."""
    from timm.data import resolve_data_config
    from timm.layers import convert_sync_batchnorm
    from timm.models import safe_model_name
    model = create_model_from_args(args, args.num_classes)
    if args.split_bn:  # timm's order: before moving to the device
        from timm.layers import convert_splitbn_model
        model = convert_splitbn_model(model, max(args.aug_splits, 2))
    if args.grad_checkpointing:
        model.set_grad_checkpointing(enable=True)
    if args.rank == 0:
        _logger.info(f'Model {safe_model_name(args.model)} created, param count:'
                     f'{sum(m.numel() for m in model.parameters())}')
    data_config = resolve_data_config(vars(args), model=model, verbose=args.rank == 0)
    model.to(device=device, dtype=args.model_dtype_torch)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    if args.distributed and args.sync_bn:
        args.dist_bn = ''
        model = convert_sync_batchnorm(model)
    return model, data_config


def check_teacher_head(args, task) -> None:
    """A teacher whose weights have another class count than the data: timm loads it with a random head (after a
    log line), and its soft targets would be noise; refused, as weights that do not fit are everywhere else."""
    from timm.task import DistillationTeacher
    for teacher in (m for m in task.modules() if isinstance(m, DistillationTeacher)):
        cfg = getattr(teacher.model, 'pretrained_cfg', None) or {}
        saved = cfg.get('num_classes')
        if cfg.get('classifier') and saved is not None and saved != args.num_classes:
            raise InputError(f'--kd-model-name {args.kd_model_name}: the teacher\'s head has {saved} classes and '
                             f'this run {args.num_classes}, so timm would replace it with an untrained one: pass a '
                             f'teacher trained on these {args.num_classes} classes')


def create_optimizer(args, model):
    """timm's optimizer; --lr from --lr-base scaled by the global batch (before supplementation), as timm."""
    from timm.optim import create_optimizer_v2, optimizer_kwargs
    if args.lr is None:
        batch_size = getattr(args, 'batch_size_reference', args.batch_size)  # a schedule's average batch, as timm
        global_batch_size = batch_size * args.world_size * args.grad_accum_steps
        batch_ratio = global_batch_size / args.lr_base_size
        if not args.lr_base_scale:
            on = args.opt.lower()
            args.lr_base_scale = 'sqrt' if any(o in on for o in ('ada', 'lamb')) else 'linear'
        if args.lr_base_scale == 'sqrt':
            batch_ratio = batch_ratio ** 0.5
        args.lr = args.lr_base * batch_ratio
        if args.rank == 0:
            _logger.info(f'Learning rate ({args.lr}) calculated from base learning rate ({args.lr_base}) and '
                         f'effective global batch size ({global_batch_size}) with {args.lr_base_scale} scaling.')
    try:
        return create_optimizer_v2(model, **optimizer_kwargs(cfg=args), **args.opt_kwargs)
    except ValueError as e:  # torch's optimizers check their values, e.g. Nesterov SGD needs a momentum
        raise InputError(f'--opt {args.opt}: {first_line(e)}: change --momentum/--opt-betas/--opt-eps/'
                         f'--opt-kwargs (timm\'s sgd is Nesterov SGD; --opt momentum is SGD without it)')


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


def prepare_task(args, task, device) -> None:
    """EMA (resumed with the weights), torch.compile, then DDP: in timm's order."""
    from timm.task import load_task_ema_checkpoint
    if args.model_ema:
        task.setup_ema(decay=args.model_ema_decay, use_warmup=args.model_ema_warmup,
                       device='cpu' if args.model_ema_force_cpu else None)
        if args.resume:
            load_task_ema_checkpoint(task, args.resume)
    if args.torchcompile:
        task.compile(backend=args.torchcompile, mode=args.torchcompile_mode)
        if task.has_ema():
            task.compile_ema(backend=args.torchcompile, mode=args.torchcompile_mode)
    if args.distributed:
        task.prepare_distributed(device_ids=[device] if device.type == 'cuda' else None,
                                 broadcast_buffers=not args.no_ddp_bb)


def create_scheduler(args, optimizer, sampler, loader_eval):
    """(timm LR scheduler, number of epochs, optimizer updates per epoch)."""
    from timm.scheduler import create_scheduler_v2, scheduler_kwargs
    decreasing = (args.eval_metric if loader_eval is not None else 'loss') == 'loss'
    updates_per_epoch = (sampler.num_batches + args.grad_accum_steps - 1) // args.grad_accum_steps
    try:
        scheduler, num_epochs = create_scheduler_v2(
            optimizer, **scheduler_kwargs(args, decreasing_metric=decreasing), updates_per_epoch=updates_per_epoch)
    except (ValueError, AssertionError) as e:
        raise InputError(f'--sched {args.sched}: {first_line(e)}: fix --decay-epochs/--warmup-epochs/--epochs')
    return scheduler, num_epochs, updates_per_epoch


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
    if start_batch and isinstance(state.sampler, LoaderEpochs):
        raise InputError(f'--resume {args.resume!r} stopped mid-epoch, and timm\'s loader here cannot skip to batch '
                         f'{start_batch}: resume from an epoch checkpoint (last.pth.tar or checkpoint-N.pth.tar)')
    if start_batch > state.sampler.num_batches:
        raise InputError(f'--resume {args.resume!r} stopped at batch {start_batch} of an epoch, and the training '
                         f'set now gives {state.sampler.num_batches} batches per epoch: the data changed since the '
                         f'checkpoint; resume with the data it was trained on')
    rng = state.rng.own(saved.get('rng_all'))
    if saved.get('rng_all') and rng is None:
        _logger.warning('RNG state not restored: the world size changed since the checkpoint.')
    elif rng is not None:
        # Mid-epoch: restored by the loop once the loader's iterator drew its seed, as after the last trained batch.
        state.resume_rng = rng if start_batch else None
        if not start_batch:
            RngState.restore(rng)
    return start_epoch, start_batch


def create_saver(args, task, model, optimizer, loss_scaler, state, output_dir, args_text, loader_eval, ckpt):
    """Rank 0's checkpoint saver (rank 0 holds the folder's lock); writes args.yaml (a resumed run rewrites it
    with its first checkpoint)."""
    if args.rank != 0:
        return None
    decreasing = (args.eval_metric if loader_eval is not None else 'loss') == 'loss'
    saver = AtomicCheckpointSaver(
        model=model, optimizer=optimizer, args=args, amp_scaler=loss_scaler, checkpoint_dir=output_dir,
        recovery_dir=output_dir, decreasing=decreasing, max_history=args.checkpoint_hist, task=task,
        training_state=state)
    if args.resume and ckpt.get('saver') and \
            os.path.abspath(os.path.dirname(args.resume)) == os.path.abspath(output_dir):
        saver.load_state_dict(ckpt['saver'])
    if not args.resume:  # a resumed run rewrites args.yaml with its checkpoints, not before
        try:
            atomic_write(os.path.join(output_dir, 'args.yaml'), lambda f: f.write(args_text), mode='w')
        except OSError as e:
            raise InputError(f'could not write args.yaml in {output_dir!r} ({e.strerror or first_line(e)}): free '
                             f'space or fix the folder, then rerun the same command')
    if args.log_wandb:
        try:
            import wandb
            wandb.init(project=args.wandb_project, name=args.experiment_name, config=args, tags=args.wandb_tags,
                       id=args.wandb_resume_id or None, resume='must' if args.wandb_resume_id else None)
        except ImportError:
            _logger.warning("You've requested to log metrics to wandb but package not found.")
            args.log_wandb = False
    return saver


def log_setup(run, num_epochs) -> None:
    args = run.args
    if not run.primary:
        return
    mix = getattr(run.task, 'mixup', None)
    _logger.info(f'Method {args.method}: synermix={args.synermix} beta={args.synermix_beta} '
                 f'source={args.synermix_source} inter={type(mix).__name__ if mix else None} '
                 f'batches={args.synermix_batches}')
    if args.synermix_batches != 'plain':
        mode = args.synermix_batches
        if mode == 'supplemented':  # simulated only for this mode: the others have one size
            size = (f'{args.batch_size} before supplementation (-b counts primaries), about '
                    f'{run.sampler.simulated_sizes().mean():.1f} after on this data')
        elif mode == 'fixed':
            size = f'{args.synermix_fixed_size} (-b {args.batch_size} primaries, supplemented to a fixed size)'
        else:
            size = f'{args.batch_size} ({args.batch_size // 2} pairs of one class)'
        _logger.info(f'Batch size per step: {size}')
    _logger.info(f'Scheduled epochs: {num_epochs}. LR stepped per '
                 f'{"epoch" if run.scheduler.t_in_epochs else "update"}.')
