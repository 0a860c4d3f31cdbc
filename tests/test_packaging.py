"""Packaging: the wheel holds the package and its subpackages and nothing else (no tests, bench or results), with
the console scripts; `timm-synermix-train` is train.py."""
import configparser
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    tomllib = pytest.importorskip('tomli')

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())
SCRIPTS = {
    'timm-synermix-train': 'timm_synermix.trainer.main:main',
    'timm-synermix-frontier': 'timm_synermix.experiments.frontier:main',
    'timm-synermix-study': 'timm_synermix.experiments.study:main',
}
SUBPACKAGES = ('method', 'trainer', 'experiments')
# Left out of the copy the wheel is built from: outputs, caches and environments (results/ holds GBs of runs).
SKIPPED = {'.git', '.venv', 'build', 'dist', '__pycache__', '.pytest_cache', 'output', 'results'}


def _source_files():
    """The files of the work tree the wheel is built from: tracked ones and untracked ones git does not ignore,
    less the untracked part of results/ (run outputs); without git, the tree less SKIPPED."""
    try:
        tracked = subprocess.run(['git', 'ls-files', '-z'], cwd=ROOT, capture_output=True, check=True).stdout
        others = subprocess.run(['git', 'ls-files', '-z', '--others', '--exclude-standard'], cwd=ROOT,
                                capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return [p.relative_to(ROOT) for p in ROOT.rglob('*') if p.is_file()
                and not SKIPPED.intersection(p.relative_to(ROOT).parts)
                and not any(part.endswith('.egg-info') for part in p.relative_to(ROOT).parts)]
    names = [n for n in tracked.decode().split('\0') if n]
    names += [n for n in others.decode().split('\0') if n and not n.startswith('results/')]
    return [pathlib.Path(n) for n in names]


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """The wheel pip builds offline with the venv's setuptools, from a copy of the work tree (so the build leaves
    no build/ or egg-info behind in the repository). The copy keeps tests/, bench/ and a results/ file, which the
    wheel must leave out."""
    src = tmp_path_factory.mktemp('src')
    for rel in _source_files():
        if (ROOT / rel).is_file():  # a tracked file deleted in the work tree is not built
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    (src / 'results').mkdir(exist_ok=True)
    (src / 'results' / 'results.md').write_text('a run output, not part of the package\n')
    out = tmp_path_factory.mktemp('wheel')
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index',
                           '-q', '-w', str(out), str(src)], capture_output=True, text=True,
                          env={**os.environ, 'PIP_NO_INDEX': '1'})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob('*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_the_wheel_holds_the_package_and_its_subpackages_only(wheel):
    project = PYPROJECT['project']
    dist_info = f'{project["name"].replace("-", "_")}-{project["version"]}.dist-info'
    assert wheel.name.startswith(f'{project["name"].replace("-", "_")}-{project["version"]}-py3-none-any')
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {n.split('/')[0] for n in names} == {'timm_synermix', dist_info}, sorted(names)
    assert 'timm_synermix/__init__.py' in names
    for sub in SUBPACKAGES:
        assert f'timm_synermix/{sub}/__init__.py' in names, sub
    # Every module of the package, and nothing else: no tests/, bench/, results/ or configs/ under any name.
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / 'timm_synermix').rglob('*.py')}
    assert {n for n in names if not n.startswith(dist_info)} == modules
    assert not [n for n in names if n.split('/')[0] in ('tests', 'bench', 'results', 'configs')]


def test_the_wheel_names_the_console_scripts_and_the_metadata(wheel):
    project = PYPROJECT['project']
    dist_info = f'{project["name"].replace("-", "_")}-{project["version"]}.dist-info'
    with zipfile.ZipFile(wheel) as z:
        entry_points = z.read(f'{dist_info}/entry_points.txt').decode()
        metadata = z.read(f'{dist_info}/METADATA').decode()
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert dict(parser['console_scripts']) == SCRIPTS
    assert f'Name: {project["name"]}\n' in metadata
    assert f'Version: {project["version"]}\n' in metadata
    for extra in ('demo', 'test'):
        assert f'Provides-Extra: {extra}\n' in metadata
    requires = [line.split(': ', 1)[1] for line in metadata.splitlines() if line.startswith('Requires-Dist: ')]
    for name in ('torch', 'torchvision', 'timm', 'safetensors', 'pyyaml', 'numpy'):
        assert any(r.split(';')[0].startswith(name) and ';' not in r for r in requires), (name, requires)


def _console_script(name):
    path = pathlib.Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f'{path} is missing: `make install` (pip install -e .) installs the console scripts')
    return path


def test_timm_synermix_train_is_train_py(tmp_path):
    """`timm-synermix-train` runs train.py's main (its exit codes are main's: the script is `sys.exit(main())`)."""
    script = _console_script('timm-synermix-train')
    proc = subprocess.run([str(script), '--help'], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith('usage: train.py '), proc.stdout[:200]
    for flag in ('--synermix', '--batch-composition'):
        assert re.search(rf'^  {flag}[ ,]', proc.stdout, re.M), (flag, proc.stdout)
