"""The paper's compared methods (spec table, paper §4.1.2) as configuration presets."""
import difflib
from typing import Dict

__all__ = ['METHODS', 'resolve_method']

# synermix: SynerMix-Intra term on (supplemented batches, two views); source: features it mixes; mixup / manifold_mixup: the inter component.
METHODS: Dict[str, Dict] = {
    'baseline': dict(synermix=False, source='original', mixup=False, manifold_mixup=False),       # wo-RA&ER, Eq. 6
    'mixup': dict(synermix=False, source='original', mixup=True, manifold_mixup=False),           # w-ER(M), Eq. 3
    'manifold-mixup': dict(synermix=False, source='original', mixup=False, manifold_mixup=True),  # w-ER(MM), Eq. 4
    'synermix-intra': dict(synermix=True, source='original', mixup=False, manifold_mixup=False),  # w-RA, Eq. 8
    'synermix-intra-aug': dict(synermix=True, source='augmented', mixup=False, manifold_mixup=False),  # w-RA(aug), Eq. 7
    'synermix': dict(synermix=True, source='original', mixup=True, manifold_mixup=False),         # w-RA&ER(M), Eq. 5
    'synermix-manifold': dict(synermix=True, source='original', mixup=False, manifold_mixup=True),  # w-RA&ER(MM), Eq. 5
}


def resolve_method(name: str) -> Dict:
    """Settings of a paper method by its preset name; unknown names raise naming the valid ones."""
    if name not in METHODS:
        close = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ''
        raise ValueError(f'Unknown method "{name}".{hint} Valid methods: {", ".join(METHODS)}.')
    return dict(METHODS[name])
