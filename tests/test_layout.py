"""The three rooms: the method imports only torch, timm and the standard library; imports run one way."""
import ast
import pathlib
import re
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'timm_synermix'
ROOMS = ('method', 'trainer', 'experiments')
ALLOWED = {'method': set(), 'trainer': {'method'}, 'experiments': {'method', 'trainer'}}


def _imports(path):
    """(absolute module names, rooms reached by relative imports) of one file."""
    modules, rooms = set(), set()
    room = path.parent.name
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                modules.add(node.module.split('.')[0])
                if node.module.startswith('timm_synermix.'):
                    rooms.add(node.module.split('.')[1])
            elif node.level == 1:
                rooms.add(room)
            elif node.module:
                rooms.add(node.module.split('.')[0])
    return modules, rooms


def test_imports_run_experiments_to_trainer_to_method():
    for room in ROOMS:
        for path in (PACKAGE / room).glob('*.py'):
            _, rooms = _imports(path)
            assert rooms - {room} <= ALLOWED[room], f'{path.name} imports {rooms - {room}}'


def test_the_method_needs_only_torch_timm_numpy_and_the_standard_library():
    for path in (PACKAGE / 'method').glob('*.py'):
        modules, _ = _imports(path)
        third_party = {m for m in modules if m not in sys.stdlib_module_names}
        assert third_party <= {'torch', 'timm', 'numpy'}, f'{path.name}: {third_party}'


def test_the_method_speaks_in_parameter_names_not_flags():
    for path in (PACKAGE / 'method').glob('*.py'):
        assert not re.findall(r"--[a-z][a-z-]+", path.read_text()), path.name


def test_train_py_only_calls_the_trainer():
    text = (PACKAGE.parent / 'train.py').read_text()
    assert len(text.splitlines()) <= 30 and 'from timm_synermix.trainer.main import main' in text


def _functions(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def _repository_sources():
    root = PACKAGE.parent
    for folder in ('timm_synermix', 'bench', 'tests'):
        yield from (root / folder).rglob('*.py')
    yield root / 'train.py'


def test_no_function_in_the_repository_is_over_80_lines():
    long = [f'{path.relative_to(PACKAGE.parent)}:{name} ({n} lines)' for path in _repository_sources()
            for name, n in _functions(path) if n > 80]
    assert not long, long


def test_the_training_script_main_is_at_most_250_lines():
    assert len((PACKAGE / 'trainer' / 'main.py').read_text().splitlines()) <= 250


def test_the_loop_does_not_know_the_methods_task():
    modules = {node.module for node in ast.walk(ast.parse((PACKAGE / 'trainer' / 'loop.py').read_text()))
               if isinstance(node, ast.ImportFrom)}
    assert not {m for m in modules if m and ('method' in m or m.endswith('tasks'))}, modules
    assert 'SynerMixTask' not in (PACKAGE / 'trainer' / 'loop.py').read_text()
    assert 'TwoViews' not in (PACKAGE / 'trainer' / 'loop.py').read_text()


def _writes_to_args(path):
    """`args.x = ...`, `args.x += ...` and `setattr(args, ...)` in one file, as (line, target)."""
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            for t in (target.elts if isinstance(target, ast.Tuple) else [target]):
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == 'args':
                    yield node.lineno, f'args.{t.attr}'
        if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'setattr' and \
                isinstance(node.args[0], ast.Name) and node.args[0].id == 'args':
            yield node.lineno, 'setattr(args, ...)'


def test_args_are_written_only_by_the_parser_and_the_configuration_step():
    allowed = {PACKAGE / 'trainer' / 'args.py', PACKAGE / 'trainer' / 'config.py'}
    writes = [f'{path.relative_to(PACKAGE.parent)}:{line} {what}' for path in PACKAGE.rglob('*.py')
              if path not in allowed for line, what in _writes_to_args(path)]
    assert not writes, writes


# A path the docs or the code cite, e.g. `docs/method.md` or tests/test_task.py: it must be in the repository.
_CITED = re.compile(r'(?<![\w/.-])((?:docs|tests|bench|configs|results|timm_synermix)/[\w./-]*\w'
                    r'\.(?:md|py|png|json|txt|yaml|log))')


def test_every_file_the_docs_and_the_code_cite_is_in_the_repository():
    root = PACKAGE.parent
    sources = [root / 'README.md', root / 'configs' / 'README.md', *(root / 'docs').glob('*.md'),
               *PACKAGE.rglob('*.py')]
    missing = sorted({f'{src.relative_to(root)} -> {ref}' for src in sources
                      for ref in _CITED.findall(src.read_text()) if not (root / ref).exists()})
    assert not missing, missing


def test_only_the_presets_key_logic_on_method_names():
    """What a method is (intra term, passes, default β, mixing) is asked of its `Preset`; no code compares a name.
    The inter kinds a `Preset` names ('mixup', 'manifold') are flags' settled values, not method names."""
    from timm_synermix.method.presets import PRESETS
    names = set(PRESETS) - {p.inter for p in PRESETS.values()}
    keyed = []
    for path in PACKAGE.rglob('*.py'):
        if path.name == 'presets.py':
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
            elif isinstance(node, ast.Call) and getattr(node.func, 'attr', '') in ('startswith', 'endswith'):
                operands = node.args
            else:
                continue
            constants = {c.value for o in operands for c in ast.walk(o) if isinstance(c, ast.Constant)}
            if constants & names or any(isinstance(c, str) and c and any(n.startswith(c) for n in names)
                                        for c in constants if isinstance(node, ast.Call)):
                keyed.append(f'{path.relative_to(PACKAGE)}:{node.lineno}')
    assert not keyed, keyed
