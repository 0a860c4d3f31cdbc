"""One run per experiment folder: a lock file naming the process that holds it; a dead holder's lock is taken."""
import os
import socket

from .errors import InputError

__all__ = ['ExperimentLock']


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ExperimentLock:
    """`<folder>/.lock`, created atomically; released on `release()` (or left behind by a killed run, then stale).

    Args:
        folder: The experiment folder (created if missing; removed again on release if nothing was written to it,
            so a run refused after taking the lock leaves no trace).
    """

    def __init__(self, folder: str):
        self.path = os.path.join(os.path.abspath(folder), '.lock')
        self.held = False
        self.created = []  # folders this lock made, deepest first

    def _holder(self):
        try:
            with open(self.path) as f:
                pid, host = f.read().split()[:2]
            return int(pid), host
        except (OSError, ValueError):
            return None, None

    def acquire(self) -> 'ExperimentLock':
        folder = os.path.dirname(self.path)
        try:
            parent = folder
            while not os.path.isdir(parent) and parent != os.path.dirname(parent):
                self.created.append(parent)
                parent = os.path.dirname(parent)
            os.makedirs(folder, exist_ok=True)
            return self._take()
        except OSError as e:  # a read-only or full disk, a file in the way
            self.release()
            raise InputError(f'cannot write the lock {self.path!r} ({e.strerror or e}): make {folder!r} writable, '
                             f'or pass another --output/--experiment')
        except InputError:
            self.release()
            raise

    def _take(self) -> 'ExperimentLock':
        own = f'{os.getpid()} {socket.gethostname()}\n'
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid, host = self._holder()
                # Our own pid: left by an earlier run in this process (e.g. main() called again from Python).
                if pid is not None and pid != os.getpid() and (host != socket.gethostname() or _alive(pid)):
                    raise InputError(f'experiment folder {os.path.dirname(self.path)!r} is in use by process {pid} '
                                     f'on {host}: wait for it to end, or use another --experiment')
                os.unlink(self.path)  # its holder is gone (killed): the lock is stale
                continue
            self.held = True
            with os.fdopen(fd, 'w') as f:
                f.write(own)
            return self
        raise InputError(f'could not take the lock {self.path!r}: remove it if no run uses that folder')

    def release(self) -> None:
        if self.held and self._holder()[0] in (os.getpid(), None):  # None: our pid never reached the disk
            os.unlink(self.path)
        self.held = False
        for folder in self.created:
            try:
                os.rmdir(folder)
            except OSError:  # the run wrote into it (or a parent holds another run): kept
                break
        self.created = []
