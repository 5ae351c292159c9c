"""A read-only knowledge base, or a --kb whose parent cannot hold one, gives a clear error, never a
chromadb/PermissionError traceback (issue 15 item 9).

Chroma's embedded store writes to its SQLite file even to open it, so reading a read-only
knowledge base is refused with "the knowledge base at … is read-only" and what to do. Tests run as
root, where file modes do not stop writes: the commands then run in a child process without
CAP_DAC_OVERRIDE/CAP_FOWNER (``setpriv``), so the modes bind as for any user.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ui.cli import main

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from click.testing import CliRunner
from ui.cli import main
out = []
for args in json.loads(sys.argv[2]):
    r = CliRunner().invoke(main, args)
    exc = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
    out.append({"code": r.exit_code, "output": r.output, "exception": exc})
print(json.dumps(out))
"""


def _run_unprivileged(commands: list[list[str]]) -> list[dict]:
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, where file modes do not block writes, and setpriv (to drop CAP_DAC_OVERRIDE) is missing")
        prefix = [setpriv, "--bounding-set=-dac_override,-fowner", "--inh-caps=-dac_override,-fowner"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import os; os.access('/', os.W_OK)"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot drop privileges here: {probe.stderr.decode(errors='replace')[:200]}")
    proc = subprocess.run(
        [*prefix, sys.executable, "-c", _CHILD, str(ROOT), json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture
def read_only_kb(small_kb_dir, tmp_path):
    target = tmp_path / "ro" / "kb"
    shutil.copytree(small_kb_dir, target, ignore=shutil.ignore_patterns(".write.lock"))
    _set_writable(tmp_path / "ro", False)
    yield target
    _set_writable(tmp_path / "ro", True)


def test_a_read_only_knowledge_base_is_named_not_a_traceback(read_only_kb, small_data_dir, tmp_path):
    kb = str(read_only_kb)
    new_kb = str(read_only_kb.parent / "new-kb")  # the parent is read-only too
    results = _run_unprivileged(
        [
            ["--kb", kb, "kb", "stats"],
            ["--kb", kb, "recall", "a web browser for the terminal"],
            ["--kb", kb, "kb", "load-vocab", str(small_data_dir / "tags.tsv")],
            ["--kb", new_kb, "kb", "load-vocab", str(small_data_dir / "tags.tsv")],
        ]
    )
    for result in results[:3]:
        assert result["exception"] is None and result["code"] == 1, result
        assert f"the knowledge base at {read_only_kb} is read-only" in result["output"], result
        assert "Traceback" not in result["output"]
    created = results[3]
    assert created["exception"] is None and created["code"] == 1, created
    assert "cannot be created" in created["output"] and "read-only" in created["output"], created
    assert not Path(new_kb).exists()


def test_a_kb_path_under_a_file_is_refused_clearly(tmp_path, small_data_dir):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a folder")
    r = CliRunner().invoke(main, ["--kb", str(blocker / "kb"), "kb", "load-vocab", str(small_data_dir / "tags.tsv")])
    assert r.exit_code == 1 and (r.exception is None or isinstance(r.exception, SystemExit)), r.output
    assert "cannot be created" in r.output and str(blocker / "kb") in r.output, r.output
    assert blocker.read_text() == "not a folder"
