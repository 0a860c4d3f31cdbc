"""train.py's training task: SynerMix's (from its preset, with the flags' criterion and teacher), or timm's
distillation task for --kd-* runs without SynerMix."""
from ..method.presets import create_synermix_task, get_preset
from .errors import to_flags
from .errors import InputError, first_line
from .loaders import mixes_in_loader

__all__ = ['create_task', 'check_teacher_head', 'mixup_switches', 'prepare_task']


def create_task(args, model, device):
    """(task, the loop's mixup or None): the run's SynerMixTask, built from its preset (`create_synermix_task`)
    with the flags' settings, which mixes inside; with --kd-model-name, timm's distillation task, which does not
    mix, so the loop mixes for it as timm's loop does."""
    if args.kd_model_name is not None and not args.synermix:
        return create_distillation_task(args, model, device)
    preset = args.preset
    if mixes_in_loader(args):  # timm's FastCollateMixup mixes in the loader: a plain task on its soft targets
        preset = get_preset('baseline')
    criterion = train_criterion(args)
    distillation = create_teacher(args, model, device)
    try:
        return create_synermix_task(
            model, preset, beta=args.synermix_beta, num_classes=args.num_classes, criterion=criterion,
            mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
            mixup_prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mixup_mode=args.mixup_mode,
            label_smoothing=args.smoothing, manifold_layers=args.manifold_layers,
            num_per_class=args.synermix_num_synth, intra_every=args.synermix_every,
            original_scale=args.synermix_orig_scale, joint_pass=args.synermix_joint_pass,
            aug_splits=args.aug_splits, distillation=distillation,
            device=device, dtype=args.model_dtype_torch, verbose=args.rank == 0), None
    except ValueError as e:  # the method's own rules, checked in the method's layer and worded here in flags
        raise InputError(to_flags(str(e)))


def train_criterion(args):
    """The loss of the augmented view (L_inter with SynerMix), chosen from the flags as timm's train.py chooses
    it, by timm's `create_classification_loss`: --loss, else --jsd-loss / --bce-loss, else cross-entropy; on the
    soft targets of any mixing, else with --smoothing. The intra term stays cross-entropy on hard labels."""
    from timm.loss import create_classification_loss
    loss_type = args.loss or ('jsd' if args.jsd_loss else 'bce' if args.bce_loss else 'ce')
    mixing = args.inter_kind is not None
    bce = dict(pos_weight=args.bce_pos_weight, bce_target_thresh=args.bce_target_thresh,
               bce_sum=args.bce_sum) if loss_type == 'bce' else {}
    try:
        return create_classification_loss(loss_type, smoothing=args.smoothing, soft_targets=mixing,
                                          jsd_splits=args.aug_splits, **bce)
    except ValueError as e:  # timm's loss factory knows which losses it has: asked, not mirrored in validation.py
        raise InputError(f'--loss {loss_type}: {first_line(e)}')


def _distill_weights(args):
    """(task, distill) loss weights as timm resolves them: distill given -> task 1 unless given; task alone ->
    distill 1 - task; neither -> both 1."""
    if args.distill_loss_weight is not None:
        return (1.0 if args.task_loss_weight is None else args.task_loss_weight), args.distill_loss_weight
    if args.task_loss_weight is not None:
        return args.task_loss_weight, 1.0 - args.task_loss_weight
    return 1.0, 1.0


def _teacher_error(args, e) -> InputError:
    return InputError(f'--kd-model-name {args.kd_model_name}: no teacher ({first_line(e)}): name a timm model with '
                      f'pretrained weights available here, or a local-dir:PATH holding config.json and '
                      f'model.safetensors')


def create_teacher(args, model, device):
    """With SynerMix, --kd-model-name is a teacher on the augmented view (logit distillation), or None."""
    if args.kd_model_name is None:
        return None
    from timm.task import DistillationTeacher
    from ..method.inter import LogitDistillation
    try:
        teacher = DistillationTeacher(args.kd_model_name, num_classes=args.num_classes,
                                      in_chans=getattr(model, 'in_chans', 3), device=device,
                                      dtype=args.model_dtype_torch)
    except (RuntimeError, OSError, ValueError, AssertionError) as e:
        raise _teacher_error(args, e)
    task_weight, distill_weight = _distill_weights(args)
    cfg = model.pretrained_cfg
    return LogitDistillation(teacher, cfg.get('mean', (0.485, 0.456, 0.406)), cfg.get('std', (0.229, 0.224, 0.225)),
                             temperature=args.kd_temperature, task_loss_weight=task_weight,
                             distill_loss_weight=distill_weight).to(device)


def create_distillation_task(args, model, device):
    """(timm's logit, feature or token distillation task with timm's train.py criterion, the loop's mixup)."""
    from timm.task import FeatureDistillationTask, LogitDistillationTask, TokenDistillationTask
    from ..method.inter import Mixup
    mixing = args.inter_kind == 'mixup'
    criterion = train_criterion(args)
    kinds = {'logit': (LogitDistillationTask, dict(loss_type=args.kd_loss_type, temperature=args.kd_temperature)),
             'feature': (FeatureDistillationTask, dict(student_feature_dim=args.kd_student_feature_dim,
                                                       teacher_feature_dim=args.kd_teacher_feature_dim)),
             'token': (TokenDistillationTask, dict(distill_type=args.kd_token_distill_type,
                                                   temperature=args.kd_temperature))}
    kind, kwargs = kinds[args.kd_distill_type]
    try:
        task = kind(model, args.kd_model_name, criterion=criterion, distill_loss_weight=args.distill_loss_weight,
                    task_loss_weight=args.task_loss_weight, device=device, dtype=args.model_dtype_torch,
                    verbose=args.rank == 0, **kwargs)
    except (RuntimeError, OSError, ValueError, AssertionError) as e:
        raise _teacher_error(args, e)
    if not mixing or mixes_in_loader(args):  # timm's collate-time mixup mixes these in the loader
        return task, None
    return task, Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                       prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                       label_smoothing=args.smoothing, num_classes=args.num_classes)


def check_teacher_head(args, task) -> None:
    """A teacher whose weights have another class count than the data: timm loads it with a random head (after a
    log line), and its soft targets would be noise; refused, as weights that do not fit are everywhere else.
    Checked here, not in validation.py: the teacher's head is known once its weights are loaded."""
    from timm.task import DistillationTeacher
    for teacher in (m for m in task.modules() if isinstance(m, DistillationTeacher)):
        cfg = getattr(teacher.model, 'pretrained_cfg', None) or {}
        saved = cfg.get('num_classes')
        if cfg.get('classifier') and saved is not None and saved != args.num_classes:
            raise InputError(f'--kd-model-name {args.kd_model_name}: the teacher\'s head has {saved} classes and '
                             f'this run {args.num_classes}, so timm would replace it with an untrained one: pass a '
                             f'teacher trained on these {args.num_classes} classes')


def mixup_switches(task, loop_mixup, loader_train) -> list:
    """What --mixup-off-epoch turns off (each has `mixup_enabled`): the task's own mixing, the loop's, and timm's
    collate-time mixup behind the prefetcher."""
    return [m for m in (task, loop_mixup, loader_train) if getattr(m, 'mixup_enabled', False)]


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
