"""Process group and device set-up: timm's, with a timeout on every collective."""
import os
from datetime import timedelta

import torch

__all__ = ['init_distributed_device']


def init_distributed_device(args) -> torch.device:
    """timm's init_distributed_device, with a timeout on every collective: when a rank dies, the others fail
    within --dist-timeout seconds instead of hanging (NCCL: with async error handling, torch's default)."""
    from timm.utils.distributed import is_distributed_env, world_info_from_env
    device_type, *_ = args.device.split(':', maxsplit=1)
    args.distributed, args.world_size, args.rank, args.local_rank = False, 1, 0, 0
    if is_distributed_env():
        args.local_rank, args.rank, args.world_size = world_info_from_env()
        backend = {'xpu': 'ccl', 'hpu': 'hccl', 'cuda': 'nccl', 'npu': 'hccl'}.get(device_type, 'gloo')
        os.environ.update(LOCAL_RANK=str(args.local_rank), RANK=str(args.rank), WORLD_SIZE=str(args.world_size))
        torch.distributed.init_process_group(
            backend=backend, init_method='env://', world_size=args.world_size, rank=args.rank,
            timeout=timedelta(seconds=args.dist_timeout))
        args.distributed = True
        if device_type != 'cpu':
            args.device = f'{device_type}:{args.local_rank}'
    if args.device.startswith('cuda:'):
        torch.cuda.set_device(args.device)
    return torch.device(args.device)
