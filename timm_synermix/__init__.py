"""timm-synermix: SynerMix (intra-class feature synthesis + mixup) for PyTorch Image Models."""
from .intra import intra_class_loss, synthesize_class_features
from .loader import create_synermix_loader
from .manifold import ManifoldMixup, default_manifold_layers
from .methods import METHODS, resolve_method
from .mixup import Mixup
from .sampler import SupplementedBatchSampler, dataset_labels
from .task import SynerMixTask
from .views import TwoViewDataset, TwoViews, create_original_transform

__version__ = '0.1.0'
