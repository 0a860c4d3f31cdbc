"""timm-synermix: SynerMix (intra-class feature synthesis + mixup) for PyTorch Image Models."""
import importlib

__version__ = '0.1.0'

# Public names -> defining module. Imported on first use (PEP 562) so that command-line tools that do
# not need timm (e.g. `python -m timm_synermix.data`) skip its multi-second import.
_EXPORTS = {
    'SupplementedBatchSampler': 'sampler',
    'dataset_labels': 'sampler',
    'TwoViews': 'views',
    'TwoViewDataset': 'views',
    'create_original_transform': 'views',
    'create_synermix_loader': 'loader',
    'Mixup': 'mixup',
    'ManifoldMixup': 'manifold',
    'default_manifold_layers': 'manifold',
    'synthesize_class_features': 'intra',
    'intra_class_loss': 'intra',
    'SynerMixTask': 'task',
    'METHODS': 'methods',
    'resolve_method': 'methods',
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
