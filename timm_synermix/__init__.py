"""timm-synermix: SynerMix (intra-class feature synthesis + mixup) for PyTorch Image Models.

Three rooms, imports running one way (experiments -> trainer -> method):
`timm_synermix.method` (the public API below), `timm_synermix.trainer` (train.py) and
`timm_synermix.experiments` (built-in data, metrics, report, compare, demo).
"""
import importlib

__version__ = '0.1.0'

# Public names -> defining module. Imported on first use (PEP 562) so that command-line tools that do
# not need timm (e.g. `python -m timm_synermix.experiments.digits`) skip its multi-second import.
_EXPORTS = {
    'SupplementedBatchSampler': 'method.sampler',
    'PairedBatchSampler': 'method.sampler',
    'dataset_labels': 'method.sampler',
    'TwoViews': 'method.views',
    'TwoViewDataset': 'method.views',
    'create_original_transform': 'method.views',
    'AugMixSplits': 'method.views',
    'create_synermix_loader': 'method.loader',
    'Mixup': 'method.inter',
    'ManifoldMixup': 'method.inter',
    'LogitDistillation': 'method.inter',
    'default_manifold_layers': 'method.inter',
    'synthesize_class_features': 'method.intra',
    'synthesize_all_classes': 'method.intra',
    'intra_class_loss': 'method.intra',
    'first_occurrences': 'method.intra',
    'SynerMixTask': 'method.task',
    'Preset': 'method.presets',
    'PRESETS': 'method.presets',
    'METHODS': 'method.presets',
    'get_preset': 'method.presets',
    'create_synermix_task': 'method.presets',
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{_EXPORTS[name]}', __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
