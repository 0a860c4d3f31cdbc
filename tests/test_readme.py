import os
import pathlib
import re

from train_helpers import write_image_folder

README = pathlib.Path(__file__).resolve().parents[1] / 'README.md'


def test_readme_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r'```python\n(.*?)```', README.read_text(), flags=re.S)
    assert blocks, 'README has no python example'
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], 'README.md', 'exec'), {'__name__': 'readme'})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(':')[0] for line in lines] == ['step 0', 'step 1', 'step 2']
    for line in lines:
        loss, intra, inter = (float(v) for v in re.findall(r'(?:loss|intra|inter) ([\d.]+)', line))
        assert abs(loss - (0.1 * intra + 0.9 * inter)) < 2e-3
        assert intra > 0


ROOT = README.parent
DOCS = [README, ROOT / 'configs' / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]


def _commands(path):
    """The shell commands of a page's ```bash blocks, continuation lines joined, comments and placeholders out."""
    for block in re.findall(r'```bash\n(.*?)```', path.read_text(), flags=re.S):
        pending = ''
        for line in block.replace('\\\n', ' ').splitlines():
            line = (pending + ' ' + line.split('  #')[0]).strip() if pending else line.split('  #')[0].strip()
            if line.count('"') % 2:   # a quoted argument that goes on over the next line
                pending = line
                continue
            pending = ''
            if line and not line.startswith('#') and '<' not in line:
                yield line


def _check(command):
    """Parse one documented command as its program would, without training: train.py through the trainer's parser
    and --method resolution, the experiments through their --dry-run, make through the Makefile's targets."""
    import shlex
    words = shlex.split(command)
    if words[0] == 'make':
        targets = re.findall(r'^([\w-]+):', (ROOT / 'Makefile').read_text(), flags=re.M)
        assert set(words[1:]) <= set(targets), command
    elif 'train.py' in words:
        from timm_synermix.trainer.args import parse_args
        from timm_synermix.trainer.config import apply_method
        apply_method(parse_args(words[words.index('train.py') + 1:])[0])
    elif {'timm_synermix.experiments.frontier', 'timm_synermix.experiments.compare',
          'timm-synermix-frontier'} & set(words):
        from timm_synermix.experiments import compare, frontier
        module = compare if 'timm_synermix.experiments.compare' in words else frontier
        start = words.index('-m') + 2 if '-m' in words else 1
        argv = [w for w in words[start:] if w not in ('--plan-only', '--report-only')]
        if not os.path.isdir(argv[0]):
            write_image_folder(argv[0])  # the dry run checks the plan against the data it names
        assert module.main(['--dry-run'] + argv) == 0, command
    else:
        assert words[:3] in (['python', '-m', 'timm_synermix.experiments.study'], ['python', '-c', words[2]]), command


def test_every_documented_command_parses(monkeypatch, capsys, tmp_path):
    for name in ('configs', 'train.py'):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    commands = [(path.name, c) for path in DOCS for c in _commands(path)]
    assert len(commands) > 20
    variables = {}   # a page's NAME="..." lines, expanded in its later commands as the shell would
    for name, command in commands:
        assignment = re.fullmatch(r'(\w+)="(.*)"', command)
        if assignment:
            variables[assignment[1]] = assignment[2]
            continue
        _check(re.sub(r'\$(\w+)', lambda m: variables[m[1]], command))
