"""The error type for bad user input, and the library's messages worded in train.py's flags."""
import re

__all__ = ['InputError', 'AgreedError', 'first_line', 'PARAM_FLAGS', 'to_flags']


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


# Library parameter name -> train.py flag (for a boolean: the flag, or {'True': flag, 'False': flag} where False has
# a flag of its own).
PARAM_FLAGS = {
    'beta': '--synermix-beta',
    'source': '--synermix-source',
    'num_per_class': '--synermix-num-synth',
    'intra_every': '--synermix-every',
    'supplement_every': '--synermix-every',
    'distinct_classes': {'True': '--batch-composition paired-distinct', 'False': '--batch-composition paired'},
    'original_scale': '--synermix-orig-scale',
    'allow_singleton_classes': '--allow-singleton-classes',
    'fixed_size': '--synermix-fixed-size',
    'joint_pass': '--synermix-joint-pass',
    'batch_size': '--batch-size',
    'num_classes': '--num-classes',
    'layers': '--manifold-layers',
    'mixup_alpha': '--mixup',
    'cutmix_alpha': '--cutmix',
    're_split': '--resplit',
    'num_repeats': '--aug-repeats',
    'aug_splits': '--aug-splits',
    'num_aug_splits': '--aug-splits',
}
_PARAM_RE = re.compile(r'\b(' + '|'.join(PARAM_FLAGS) + r')=("?)([^\s,:;"]*)\2')


def to_flags(message: str) -> str:
    """A library message in train.py's terms: 'beta=1.5 is outside [0, 1]' -> '--synermix-beta 1.5 is ...'."""
    def flag(match):
        name, value = match.group(1), match.group(3)
        if isinstance(PARAM_FLAGS[name], dict):
            return PARAM_FLAGS[name][value]
        if value in ('True', 'False'):
            return PARAM_FLAGS[name] if value == 'True' else 'no ' + PARAM_FLAGS[name]
        return f'{PARAM_FLAGS[name]} {value}'.rstrip()
    return _PARAM_RE.sub(flag, message)
