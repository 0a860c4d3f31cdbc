import pathlib
import re

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
