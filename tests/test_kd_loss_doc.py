"""docs/kd_loss.md's example runs as written (the python code block, executed)."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "kd_loss.md"


def test_kd_loss_doc_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], str(DOC), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["kd", "logit_std", "dkd"]
    assert all(float(line.split()[1]) > 0 for line in lines)
