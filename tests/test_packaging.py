"""Packaging: the wheel holds the package and its subpackages and nothing else (no tests, bench or results), with
the console scripts; `timm-synermix-train` is train.py; the wheel installed without extras finishes every command
it installs."""
import configparser
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from train_helpers import write_image_folder

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
    for name in ('torch', 'torchvision', 'timm', 'safetensors', 'pyyaml', 'numpy', 'matplotlib'):
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


# ---------------------------------------------------------------------------------------------------------------
# the base install: the wheel and its core dependencies, no extras
# ---------------------------------------------------------------------------------------------------------------

def _requirements_closure(requirements):
    """The installed distributions `requirements` pull in, their own requirements included (extras left out)."""
    from importlib import metadata
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    found, todo = {}, list(requirements)
    while todo:
        requirement = Requirement(todo.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({'extra': ''}):
            continue
        name = canonicalize_name(requirement.name)
        if name not in found:
            found[name] = metadata.distribution(requirement.name)
            todo += found[name].requires or []
    return found


def _link_distributions(distributions, folder):
    """Symlink every top-level module, package and .dist-info folder of `distributions` into `folder`."""
    folder.mkdir()
    for dist in distributions.values():
        for top in {f.parts[0] for f in dist.files or () if f.parts[0] != '..'}:
            if top != '__pycache__' and not top.endswith('.pth') and not (folder / top).exists():
                (folder / top).symlink_to(dist.locate_file(top))


@pytest.fixture(scope='module')
def base_install(wheel, tmp_path_factory):
    """A fresh venv holding the wheel, without extras, and the distributions its requirements pull in.

    Installing torch afresh costs a minute and 5 GB per run. The fresh venv instead reads this venv's copies of
    exactly the distributions the wheel's Requires-Dist pull in (computed with importlib.metadata, so scikit-learn
    and mlxtend, which only the extras name, are absent), through a .pth naming a folder of symlinks to them; the
    wheel itself is installed by pip, offline and without dependencies, as any user's install puts it there."""
    root = tmp_path_factory.mktemp('base_install')
    venv = root / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    python = venv / 'bin' / 'python'
    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode()
    requires = [line.split(': ', 1)[1] for line in metadata.splitlines() if line.startswith('Requires-Dist: ')]
    _link_distributions(_requirements_closure(requires), root / 'core')
    site_packages = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                                   capture_output=True, text=True, check=True).stdout.strip()
    pathlib.Path(site_packages, 'core_dependencies.pth').write_text(f'{root / "core"}\n')
    proc = subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '--no-deps', '--no-index',
                           '-q', str(wheel)], capture_output=True, text=True, env={**os.environ, 'PIP_NO_INDEX': '1'})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = {key: value for key, value in os.environ.items() if key not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env.update(OMP_NUM_THREADS='1', HF_HUB_OFFLINE='1', PYTHONNOUSERSITE='1', MPLBACKEND='Agg')
    return dict(bin=venv / 'bin', env=env, data=write_image_folder(root / 'data'), cwd=root)


def _run(install, command, *args, timeout=600):
    return subprocess.run([str(install['bin'] / command), *map(str, args)], capture_output=True, text=True,
                          cwd=install['cwd'], env=install['env'], timeout=timeout)


# test_resnet at 32 px, one epoch of 4 steps, on the 3-class ImageFolder of train_helpers
TINY = ['--model', 'test_resnet', '--img-size', '32', '-b', '4', '--device', 'cpu', '-j', '0', '--lr', '0.05',
        '--warmup-epochs', '0', '--val-split', 'validation']


def test_the_base_install_has_matplotlib_and_not_scikit_learn(base_install):
    proc = _run(base_install, 'python', '-c', 'import matplotlib, timm_synermix; print(timm_synermix.__file__)')
    assert proc.returncode == 0 and str(base_install['cwd']) in proc.stdout, proc.stderr
    proc = _run(base_install, 'python', '-c', 'import sklearn')
    assert proc.returncode == 1 and 'ModuleNotFoundError' in proc.stderr


def test_the_base_install_trains_skipping_the_feature_metrics_in_one_line(base_install, tmp_path):
    proc = _run(base_install, 'timm-synermix-train', base_install['data'], *TINY, '--epochs', '1', '--method',
                'synermix', '--output', tmp_path, '--experiment', 'base')
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = [line for line in proc.stderr.splitlines() if 'Feature metrics skipped' in line]
    assert len(skipped) == 1 and 'scikit-learn is not installed' in skipped[0]
    results = json.loads((tmp_path / 'base' / 'results.json').read_text())
    assert results['method'] == 'synermix' and results['finished'] and results['metrics'] == {}


def test_the_base_install_plans_and_runs_a_frontier(base_install, tmp_path):
    own = [base_install['data'], '--epochs', '1', '--ladder', '1', '--variants', 'synermix-intra', '--seeds', '0',
           '--last-k', '1', '--out', tmp_path, '--workers', '1']
    proc = _run(base_install, 'timm-synermix-frontier', *own, '--dry-run', '--', *TINY)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3, proc.stderr[-3000:]
    proc = _run(base_install, 'timm-synermix-frontier', *own, '--', *TINY)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / 'frontier.png').stat().st_size > 0 and (tmp_path / 'frontier.md').is_file()


def test_the_base_install_runs_the_quick_study(base_install, tmp_path):
    proc = _run(base_install, 'timm-synermix-study', '--quick', '--out', tmp_path / 'study')
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
