"""Config files (unknown keys fail) and --method presets resolved into flags."""
import argparse

import pytest
import yaml

from timm_synermix.trainer.config import apply_method, args_to_yaml, derive_method_name, load_config, parser_dests
from timm_synermix.trainer.errors import InputError

from timm_synermix.trainer.args import build_parsers


@pytest.fixture(scope='module')
def parser():
    return build_parsers()[1]


def _args(**kw):
    base = dict(method=None, synermix=False, synermix_source=None, synermix_beta=None, mixup=0.0, cutmix=0.0,
                cutmix_minmax=None, manifold_mixup=False, synermix_batches=None, mixup_prob=1.0)
    base.update(kw)
    return argparse.Namespace(**base)


def test_derive_method_name():
    assert derive_method_name(_args()) == 'baseline'
    assert derive_method_name(_args(mixup=0.2)) == 'mixup'
    assert derive_method_name(_args(cutmix=1.0)) == 'cutmix'
    assert derive_method_name(_args(mixup=1.0, cutmix=1.0)) == 'mixup-cutmix'
    assert derive_method_name(_args(manifold_mixup=True)) == 'manifold-mixup'
    assert derive_method_name(_args(synermix=True)) == 'synermix-intra'
    assert derive_method_name(_args(synermix=True, synermix_source='augmented')) == 'synermix-intra-aug'
    assert derive_method_name(_args(synermix=True, mixup=1.0)) == 'synermix'
    assert derive_method_name(_args(synermix=True, manifold_mixup=True)) == 'synermix-manifold'
    assert derive_method_name(_args(synermix=True, cutmix=1.0)) == 'synermix-cutmix'


def test_apply_method_presets_and_beta_defaults():
    a = apply_method(_args(method='synermix'))
    assert a.synermix and a.mixup == 1.0 and a.synermix_beta == 0.1
    a = apply_method(_args(method='synermix', mixup=0.05))
    assert a.mixup == 0.05  # an explicit alpha is kept
    a = apply_method(_args(method='synermix-manifold'))
    assert a.manifold_mixup and a.mixup == 1.0 and a.synermix_beta == 0.1
    a = apply_method(_args(method='synermix-intra-aug'))
    assert a.synermix_source == 'augmented' and a.synermix_beta == 0.5 and a.mixup == 0.0
    a = apply_method(_args(synermix=True, mixup=1.0))
    assert a.method == 'synermix' and a.synermix_beta == 0.1
    a = apply_method(_args(method='clean-view'))
    assert a.synermix and a.synermix_source == 'original' and a.synermix_beta == 0.5 and a.method == 'clean-view'


def test_the_batch_composition_defaults_to_supplemented_with_the_intra_term_and_plain_without():
    assert apply_method(_args(method='synermix')).synermix_batches == 'supplemented'
    assert apply_method(_args(method='mixup')).synermix_batches == 'plain'
    a = apply_method(_args(method='mixup', synermix_batches='paired-distinct'))
    assert a.synermix_batches == 'paired-distinct' and a.method == 'mixup' and not a.synermix


def test_a_run_without_an_intra_term_is_never_named_after_synermix():
    a = apply_method(_args(method='synermix', synermix_beta=0.0))
    assert (a.method, a.synermix, a.synermix_batches, a.synermix_beta) == ('mixup', False, 'supplemented', 0.0)
    a = apply_method(_args(synermix=True, synermix_beta=0.0, synermix_batches='paired'))
    assert (a.method, a.synermix, a.synermix_batches) == ('baseline', False, 'paired')
    a = apply_method(_args(synermix=True, synermix_beta=0.0, cutmix=1.0))
    assert a.method == 'cutmix'


@pytest.mark.parametrize('kw, needle', [
    (dict(method='synermx'), 'synermix'),
    (dict(method='baseline', mixup=1.0), 'no inter-class mixing'),
    (dict(method='mixup', synermix=True), '--synermix'),
    (dict(method='mixup', manifold_mixup=True), '--manifold-mixup'),
    (dict(method='manifold-mixup', cutmix=1.0), '--cutmix'),
    (dict(method='synermix', synermix_beta=1.5), 'outside [0, 1]'),
    (dict(method='synermix', synermix_beta=-0.1), 'outside [0, 1]'),
    (dict(synermix=True, synermix_source='augmented', mixup=1.0), 'augmented'),
    (dict(method='mixup', synermix_beta=0.3), 'does not have'),
    (dict(synermix=True, synermix_batches='plain'), 'two images of every class'),
])
def test_apply_method_rejects_conflicts(kw, needle):
    with pytest.raises(InputError, match=None) as e:
        apply_method(_args(**kw))
    assert needle in str(e.value) and '\n' not in str(e.value)


# --method never overrides an explicit flag: one case per preset field a flag can contradict.
@pytest.mark.parametrize('kw, needle', [
    (dict(method='synermix', synermix_source='augmented'), '--synermix-source augmented was given'),  # source
    (dict(method='synermix-intra-aug', synermix_source='original'), 'use --method synermix-intra'),  # source
    (dict(method='baseline', synermix_source='augmented'), 'no intra term'),  # intra
    (dict(method='baseline', synermix=True), '--synermix'),  # intra
    (dict(method='synermix-intra', mixup=1.0), 'no inter-class mixing'),  # inter
    (dict(method='synermix', manifold_mixup=True), 'uses MixUp'),  # inter
    (dict(method='clean-view', synermix_source='augmented'), 'drop --synermix-source'),  # intra_mode's source
])
def test_method_never_overrides_an_explicit_flag(kw, needle):
    with pytest.raises(InputError) as e:
        apply_method(_args(**kw))
    assert needle in str(e.value) and '\n' not in str(e.value)


def test_a_mixing_preset_fills_in_mixup_0_only_where_it_was_not_given():
    assert apply_method(_args(method='synermix'), given={}).mixup == 1.0
    assert apply_method(_args(method='synermix'), given={'mixup': 'mixup (timm_args.yaml)'}).mixup == 1.0
    with pytest.raises(InputError, match='--method synermix mixes with MixUp but --mixup 0 turns it off'):
        apply_method(_args(method='synermix'), given={'mixup': '--mixup'})


@pytest.mark.parametrize('kw, name', [(dict(mixup=1.0), 'mixup'), (dict(cutmix=1.0), 'cutmix'),
                                      (dict(mixup=0.5, cutmix=1.0), 'mixup-cutmix'),
                                      (dict(cutmix_minmax=[0.2, 0.8]), 'cutmix'),
                                      (dict(manifold_mixup=True), 'manifold-mixup'), ({}, None)])
def test_the_inter_class_mixing_is_named_for_what_mixes(kw, name):
    from timm_synermix.trainer.config import inter_name
    assert inter_name(_args(**kw)) == name


def test_load_config_unknown_key_names_closest(tmp_path, parser):
    path = tmp_path / 'typo.yaml'
    path.write_text(yaml.safe_dump({'model': 'resnet18', 'smothing': 0.0}))
    with pytest.raises(InputError) as e:
        load_config(str(path), parser_dests(parser))
    assert "'smothing'" in str(e.value) and "'smoothing'" in str(e.value)


def test_load_config_dashes_missing_and_malformed(tmp_path, parser):
    path = tmp_path / 'ok.yaml'
    path.write_text('model: resnet18\nsynermix-beta: 0.2\n')
    assert load_config(str(path), parser_dests(parser)) == {'model': 'resnet18', 'synermix_beta': 0.2}
    with pytest.raises(InputError, match='not found'):
        load_config(str(tmp_path / 'nope.yaml'), parser_dests(parser))
    bad = tmp_path / 'bad.yaml'
    bad.write_text('model: [resnet18\n')
    with pytest.raises(InputError, match='not valid YAML'):
        load_config(str(bad), parser_dests(parser))
    listy = tmp_path / 'list.yaml'
    listy.write_text('- model\n')
    with pytest.raises(InputError, match='mapping'):
        load_config(str(listy), parser_dests(parser))


def test_args_yaml_round_trips(tmp_path, parser):
    args = parser.parse_args(['data', '--model', 'test_resnet', '--synermix-beta', '0.3'])
    path = tmp_path / 'args.yaml'
    path.write_text(args_to_yaml(args, parser_dests(parser)))
    cfg = load_config(str(path), parser_dests(parser))
    assert cfg['model'] == 'test_resnet' and cfg['synermix_beta'] == 0.3


def test_library_parameter_names_become_flags_in_messages():
    from timm_synermix.trainer.errors import to_flags
    assert to_flags('beta=1.5 is outside [0, 1]') == '--synermix-beta 1.5 is outside [0, 1]'
    assert to_flags('use batch_size=2 or more; pass allow_singleton_classes=True') == \
        'use --batch-size 2 or more; pass --allow-singleton-classes'
    assert to_flags('source="augmented" mixes') == '--synermix-source augmented mixes'


def test_every_timm_train_py_flag_is_accepted_with_timms_default(parser):
    import json
    import os
    path = os.path.join(os.path.dirname(__file__), 'data', 'timm_train_flags.json')
    with open(path) as f:
        timm_flags = json.load(f)['flags']
    actions = {option: action for action in parser._actions for option in action.option_strings}
    assert not sorted(set(timm_flags) - set(actions))
    # --decay-epochs None means timm's scheduler default: 90 for step, a 0.2 fraction for wsd/rsqrt
    differ = {flag: (default, actions[flag].default) for flag, default in timm_flags.items()
              if actions[flag].default != default}
    assert differ == {'--decay-epochs': (90, None)}


def test_unknown_yaml_keys_are_all_reported_with_right_suggestions(tmp_path, parser):
    path = tmp_path / 'keys.yaml'
    path.write_text(yaml.safe_dump({'bce_summ': True, 'tta_x': 1, 'lr': 0.1, 'completely_unrelated': 3}))
    with pytest.raises(InputError) as e:
        load_config(str(path), parser_dests(parser))
    message = str(e.value)
    assert "'bce_summ' (did you mean 'bce_sum'?)" in message and "'tta_x' (did you mean 'tta'?)" in message
    assert "'completely_unrelated'" in message and 'resume' not in message


def test_numeric_strings_in_yaml_are_read_as_the_command_line_would(tmp_path):
    from timm_synermix.trainer.args import parse_args
    path = tmp_path / 'numbers.yaml'
    path.write_text(yaml.safe_dump({'lr': '3e-4', 'epochs': '10', 'mean': ['0.5', 0.4, '0.3']}))
    args, _ = parse_args(['-c', str(path)])
    assert args.lr == 3e-4 and args.epochs == 10 and args.mean == [0.5, 0.4, 0.3]


def _settled(parser, *argv):
    from timm_synermix.trainer.config import settle
    from timm_synermix.trainer.distributed import World
    return settle(apply_method(parser.parse_args(['data', *argv])), World(False, 1, 0, 0, 'cpu'))


def test_the_settled_run_configuration_holds_the_preset_and_what_the_flags_imply(parser):
    from timm_synermix.method.presets import PRESETS
    args = _settled(parser, '--method', 'synermix', '--no-prefetcher', '--grad-accum-steps', '0', '--opt', 'adamw')
    assert args.preset is PRESETS['synermix'] and args.inter_kind == 'mixup' and args.synermix_beta == 0.1
    assert args.synermix_batches == 'supplemented' and args.prefetcher is False and args.grad_accum_steps == 1
    assert args.lr_base_scale == 'sqrt' and args.data_dir == 'data' and args.rank == 0


def test_the_settled_run_configuration_is_read_only_and_changes_by_replace(parser):
    args = _settled(parser, '--method', 'baseline')
    with pytest.raises(AttributeError, match='settled'):
        args.num_classes = 10
    later = args.replace(num_classes=10)
    assert later.num_classes == 10 and args.num_classes is None
    with pytest.raises(AttributeError):
        later.lr = 0.1
    plain = later.plain()   # what a checkpoint pickles: a plain Namespace, without the preset object
    assert type(plain) is argparse.Namespace and not hasattr(plain, 'preset') and plain.num_classes == 10


def test_a_resume_may_change_the_optimisation_but_not_what_the_run_is(parser):
    from timm_synermix.trainer.config import identity_changes
    saved = _settled(parser, '--method', 'baseline').plain()
    dests = parser_dests(parser)
    assert identity_changes(saved, _settled(parser, '--method', 'baseline', '--epochs', '9', '--lr', '0.3',
                                            '--opt', 'adamw', '-j', '3', '--output', 'elsewhere'), dests) == []
    assert identity_changes(saved, _settled(parser, '--method', 'baseline', '--jsd-loss', '--aug-splits', '3',
                                            '--val-holdout', '0.1'), dests) == \
        ['--aug-splits 0 -> 3', '--jsd-loss False -> True', '--val-holdout None -> 0.1']
