"""Process group and device set-up: timm's, with a timeout on every collective."""
import os
from datetime import timedelta
from typing import NamedTuple

import torch

__all__ = ['World', 'init_distributed_device', 'report_to_torchrun']


class World(NamedTuple):
    """This process's place in the run, as timm's train.py records it on its args."""
    distributed: bool
    world_size: int
    rank: int
    local_rank: int
    device: str


def init_distributed_device(args) -> World:
    """timm's init_distributed_device, with a timeout on every collective: when a rank dies, the others fail
    within --dist-timeout seconds instead of hanging (NCCL: with async error handling, torch's default)."""
    from timm.utils.distributed import is_distributed_env, world_info_from_env
    device_type, *_ = args.device.split(':', maxsplit=1)
    world = World(False, 1, 0, 0, args.device)
    if is_distributed_env():
        local_rank, rank, world_size = world_info_from_env()
        backend = {'xpu': 'ccl', 'hpu': 'hccl', 'cuda': 'nccl', 'npu': 'hccl'}.get(device_type, 'gloo')
        os.environ.update(LOCAL_RANK=str(local_rank), RANK=str(rank), WORLD_SIZE=str(world_size))
        torch.distributed.init_process_group(
            backend=backend, init_method='env://', world_size=world_size, rank=rank,
            timeout=timedelta(seconds=args.dist_timeout))
        world = World(True, world_size, rank, local_rank,
                      args.device if device_type == 'cpu' else f'{device_type}:{local_rank}')
    if world.device.startswith('cuda:'):
        torch.cuda.set_device(world.device)
    return world


def report_to_torchrun(line: str) -> None:
    """Hand a one-line error to torchrun, which then shows it as the failed rank's root cause in its own report
    (else it shows a link to its docs). torchrun names the file in TORCHELASTIC_ERROR_FILE, per rank; the format is
    that of its `ErrorHandler.record_exception`, with the line in place of a traceback."""
    path = os.environ.get('TORCHELASTIC_ERROR_FILE')
    if not path:
        return
    import json
    import time
    try:
        with open(path, 'w') as f:
            json.dump({'message': {'message': line, 'extraInfo': {'py_callstack': line,
                                                                  'timestamp': str(int(time.time()))}}}, f)
    except OSError:  # the line is on stderr already
        pass
