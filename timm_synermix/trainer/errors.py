"""The error type for bad user input."""

__all__ = ['InputError', 'AgreedError', 'first_line']


class InputError(ValueError):
    """Bad user input: a flag, a config key, a data folder, a checkpoint or a weights file.

    Its message is one line that names the problem and the fix; the trainer prints it without a
    traceback (unless --debug) and exits with code 2, before writing anything.

    Example:
        ```python
        raise InputError('--synermix-beta 2.0 is outside [0, 1]: use e.g. 0.1')
        ```
    """


class AgreedError(InputError):
    """An InputError every rank raises at the same step (the ranks agreed on it through a collective), so they
    can wait for each other to print it before any exits: torchrun stops the other ranks once one has exited."""


def first_line(exc: BaseException, prefer=('size mismatch', 'Missing key', 'Unexpected key')) -> str:
    """The line of an exception's message worth showing in a one-line error (at most 240 characters)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith(prefer):
            return line[:240]
    return (lines[0] if lines else type(exc).__name__)[:240]
