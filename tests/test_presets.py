"""The paper's methods in one place: each preset's facts, and the task it builds."""
import pytest
import timm

from timm_synermix import ManifoldMixup, Mixup, PRESETS, create_synermix_task, get_preset
from timm_synermix.method.presets import find_preset


def test_presets_hold_the_papers_method_table():
    table = {name: (p.paper_name, p.intra, p.source, p.inter, p.default_beta) for name, p in PRESETS.items()
             if p.paper}
    assert table == {
        'baseline': ('wo-RA&ER', False, 'original', None, 0.0),
        'mixup': ('w-ER(M)', False, 'original', 'mixup', 0.0),
        'manifold-mixup': ('w-ER(MM)', False, 'original', 'manifold', 0.0),
        'synermix-intra': ('w-RA', True, 'original', None, 0.5),
        'synermix-intra-aug': ('w-RA(aug)', True, 'augmented', None, 0.5),
        'synermix': ('w-RA&ER(M)', True, 'original', 'mixup', 0.1),
        'synermix-manifold': ('w-RA&ER(MM)', True, 'original', 'manifold', 0.1),
    }
    assert PRESETS['synermix'].beta_grid == (0.05, 0.1, 0.2, 0.4)
    assert PRESETS['synermix-intra'].beta_grid == (0.2, 0.4, 0.5, 0.7)
    assert all(p.supplemented == p.intra for p in PRESETS.values())
    assert PRESETS['synermix'].at_beta_zero == 'mixup' and PRESETS['synermix-intra'].at_beta_zero == 'baseline'


def test_the_clean_view_controls_are_outside_the_papers_table_at_synermix_cost():
    controls = {name: p for name, p in PRESETS.items() if not p.paper}
    assert set(controls) == {'clean-view', 'clean-view-mixup'}
    for name, twin in (('clean-view', 'synermix-intra'), ('clean-view-mixup', 'synermix')):
        p, q = PRESETS[name], PRESETS[twin]
        assert p.intra_mode == 'clean' and (p.source, p.inter, p.default_beta, p.beta_grid, p.supplemented) == \
            (q.source, q.inter, q.default_beta, q.beta_grid, q.supplemented)
    assert find_preset(True, 'original', None).name == 'synermix-intra'  # flags never pick a control


@pytest.mark.parametrize('name', list(PRESETS))
def test_create_synermix_task_builds_the_presets_components(name):
    preset = PRESETS[name]
    task = create_synermix_task(timm.create_model('resnet10t', num_classes=4), name, verbose=False)
    assert task.beta == preset.default_beta and task.source == preset.source
    assert type(task.mixup) is {None: type(None), 'mixup': Mixup, 'manifold': ManifoldMixup}[preset.inter]
    if task.mixup is not None:
        assert task.mixup.num_classes == 4


def test_components_name_their_preset_and_unknown_names_suggest_one():
    assert find_preset(True, 'original', 'mixup').name == 'synermix'
    assert find_preset(False, 'augmented', None).name == 'baseline'
    assert find_preset(True, 'augmented', None).name == 'synermix-intra-aug'
    with pytest.raises(ValueError, match='mixup already mixes'):
        find_preset(True, 'augmented', 'mixup')
    with pytest.raises(ValueError, match='Did you mean "synermix"'):
        get_preset('synermx')


def test_beta_for_a_method_without_the_intra_term_is_refused():
    with pytest.raises(ValueError, match='beta=0.2 but method "mixup" has no intra term'):
        create_synermix_task(timm.create_model('resnet10t', num_classes=4), 'mixup', beta=0.2, verbose=False)
