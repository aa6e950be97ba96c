"""Every code block in docs/*.md runs: `python` blocks in-process, `console` blocks' `$ deconvnd-cl ...`
lines as subprocesses (each must exit 0)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks():
    found = []
    for page in DOCS:
        for i, match in enumerate(BLOCK.finditer(page.read_text())):
            found.append(pytest.param(match.group(1), match.group(2), id=f"{page.stem}-{i}"))
    return found


def test_docs_have_only_runnable_blocks():
    kinds = {kind for page in DOCS for kind, _ in BLOCK.findall(page.read_text())}
    assert kinds <= {"python", "console"}, kinds


@pytest.mark.parametrize("kind, code", blocks())
def test_block_runs(queue, kind, code, tmp_path):
    if kind == "python":
        import deconvnd_cl as dcl
        try:  # a block may choose another default queue: give the other tests theirs back
            exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})
        finally:
            dcl.set_default_queue(queue)
        return
    env = dict(os.environ, DECONVND_CL_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    for line in code.splitlines():
        assert line.startswith("$ deconvnd-cl "), line
        args = shlex.split(line[2:])[1:]
        result = subprocess.run([sys.executable, "-m", "deconvnd_cl", *args], env=env, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, (line, result.stdout[-1500:], result.stderr[-1500:])
