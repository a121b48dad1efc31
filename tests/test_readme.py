"""The README's promises: the example runs, the two commands exist, and CI runs the test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_example_runs(capsys):
    block = re.search(r"<!-- example: executed by tests/test_readme.py -->\s*```python\n(.*?)```", README, re.S)
    assert block, "the README lost its executed example"
    exec(compile(block.group(1), "README example", "exec"), {})
    out = capsys.readouterr().out
    nll, truth = map(float, re.search(r"test NLL (\S+) nats/point \(true density: (\S+)\)", out).groups())
    # The model cannot beat the truth beyond Monte Carlo error on 1000 test points (stderr ~0.03),
    # and 300 steps bring a 6-layer RealNVP well within 1 nat of it.
    assert truth - 0.1 < nll < truth + 1.0, out
    assert "torch.Size([5, 2])" in out


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_command():
    first_block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["bash scripts/course", "bash scripts/test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test" in ci
