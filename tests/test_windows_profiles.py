"""``cnnbook.profiles.reexec_under`` on Windows, where ``os.execve`` cannot replace the process.

The Windows branch runs here for real (``_windows`` mocked): the script must run again as a
child with the profile's variables and every argument intact (a path with a space stays one
argument), and this process must exit with the child's status.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from cnnbook import profiles


def test_windows_restart_keeps_arguments_and_passes_the_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profiles, "_windows", lambda: True)
    monkeypatch.delattr(os, "execve")  # as if it could not be used
    script = tmp_path / "Jane Doe" / "bench.py"
    script.parent.mkdir()
    out = tmp_path / "seen.json"
    script.write_text(
        "import json, os, sys\n"
        f"f = open({str(out)!r}, 'w', encoding='utf-8')\n"
        "json.dump([sys.argv, os.environ.get('OMP_NUM_THREADS')], f)\n"
        "f.close()\n"
        "sys.exit(3)\n",
        encoding="utf-8",
    )
    argv = [sys.executable, str(script), "--note", "two words"]
    env = profiles.apply("laptop", dict(os.environ))
    with pytest.raises(SystemExit) as stopped:
        profiles._restart(argv, env)
    assert stopped.value.code == 3
    seen_argv, threads = json.loads(out.read_text(encoding="utf-8"))
    assert seen_argv == argv[1:]
    assert threads == env["OMP_NUM_THREADS"]


def test_posix_restart_replaces_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(profiles, "_windows", lambda: False)
    monkeypatch.setattr(os, "execve", lambda *args: calls.append(args))
    profiles._restart(["python", "x.py"], {"A": "1"})
    assert calls == [("python", ["python", "x.py"], {"A": "1"})]
