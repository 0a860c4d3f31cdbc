"""The optimizer and LR schedule: timm's factories, with the LR scaled from --lr-base as timm's train.py does."""
import logging

from .errors import InputError, first_line

__all__ = ['scaled_lr', 'create_optimizer', 'create_scheduler']

_logger = logging.getLogger('train')


def scaled_lr(args, batch_size: float) -> float:
    """--lr, else --lr-base scaled (linear or sqrt) by the global batch over --lr-base-size, as timm."""
    if args.lr is not None:
        return args.lr
    global_batch_size = batch_size * args.world_size * args.grad_accum_steps
    batch_ratio = global_batch_size / args.lr_base_size
    if args.lr_base_scale == 'sqrt':
        batch_ratio = batch_ratio ** 0.5
    lr = args.lr_base * batch_ratio
    if args.rank == 0:
        _logger.info(f'Learning rate ({lr}) calculated from base learning rate ({args.lr_base}) and effective global '
                     f'batch size ({global_batch_size}) with {args.lr_base_scale} scaling.')
    return lr


def create_optimizer(args, model):
    """timm's optimizer for `model` with the settled --lr (`scaled_lr`)."""
    from timm.optim import create_optimizer_v2, optimizer_kwargs
    try:
        return create_optimizer_v2(model, **optimizer_kwargs(cfg=args), **args.opt_kwargs)
    except ValueError as e:  # torch's optimizers check their values, e.g. Nesterov SGD needs a momentum
        raise InputError(f'--opt {args.opt}: {first_line(e)}: change --momentum/--opt-betas/--opt-eps/'
                         f'--opt-kwargs (timm\'s sgd is Nesterov SGD; --opt momentum is SGD without it)')


def create_scheduler(args, optimizer, num_batches: int, has_eval: bool):
    """(timm LR scheduler, number of epochs, optimizer updates per epoch)."""
    from timm.scheduler import create_scheduler_v2, scheduler_kwargs
    decreasing = (args.eval_metric if has_eval else 'loss') == 'loss'
    updates_per_epoch = (num_batches + args.grad_accum_steps - 1) // args.grad_accum_steps
    try:
        scheduler, num_epochs = create_scheduler_v2(
            optimizer, **scheduler_kwargs(args, decreasing_metric=decreasing), updates_per_epoch=updates_per_epoch)
    except (ValueError, AssertionError) as e:
        raise InputError(f'--sched {args.sched}: {first_line(e)}: fix --decay-epochs/--warmup-epochs/--epochs')
    return scheduler, num_epochs, updates_per_epoch
