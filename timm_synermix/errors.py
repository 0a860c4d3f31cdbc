"""The error type for bad user input."""

__all__ = ['InputError']


class InputError(ValueError):
    """Bad user input: a flag, a config key, a data folder, a checkpoint or a weights file.

    Its message is one line that names the problem and the fix; train.py prints it without a
    traceback (unless --debug) and exits with code 2, before writing anything.

    Example:
        ```python
        raise InputError('--synermix-beta 2.0 is outside [0, 1]: use e.g. 0.1')
        ```
    """
