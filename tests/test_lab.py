"""cnnbook.lab: the command `make lab` runs, on Linux, macOS and Windows (mocked), without a server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path, PureWindowsPath

import pytest

from cnnbook import lab

WIN_ROOT = PureWindowsPath(r"C:\Users\Jane Doe\cnnbook")
WIN_PYTHON = r"C:\Users\Jane Doe\cnnbook\.venv\Scripts\python.exe"


def _windows_argv(cmdline: str) -> list[str]:
    """Split a command line the way the Microsoft C runtime does (CommandLineToArgvW rules)."""
    args: list[str] = []
    cur: list[str] = []
    in_quotes = had_arg = False
    i = 0
    while i < len(cmdline):
        ch = cmdline[i]
        if ch == "\\":
            n = 0
            while i < len(cmdline) and cmdline[i] == "\\":
                n += 1
                i += 1
            if i < len(cmdline) and cmdline[i] == '"':
                cur.append("\\" * (n // 2))
                if n % 2:
                    cur.append('"')
                    i += 1
            else:
                cur.append("\\" * n)
            had_arg = True
            continue
        if ch == '"':
            in_quotes = not in_quotes
            had_arg = True
        elif ch in " \t" and not in_quotes:
            if had_arg:
                args.append("".join(cur))
                cur, had_arg = [], False
        else:
            cur.append(ch)
            had_arg = True
        i += 1
    if had_arg:
        args.append("".join(cur))
    return args


def test_windows_splitter_is_faithful() -> None:
    # guards the helper the quoting test relies on
    assert _windows_argv(r'a "b c" d\\"e f"') == ["a", "b c", "d\\e f"]
    assert _windows_argv(r'"x\"y" z') == ['x"y', "z"]


def test_arguments_serve_root_and_open_start_page() -> None:
    args = lab.lab_arguments()
    assert f"--ServerApp.root_dir={lab.ROOT}" in args
    assert "--LabApp.default_url=/lab/tree/START_HERE.ipynb" in args
    assert args[-1] == str(lab.ROOT / "START_HERE.ipynb")
    assert (lab.ROOT / "START_HERE.ipynb").is_file()


def test_student_view_settings() -> None:
    args = lab.lab_arguments()
    assert f"--LabApp.app_settings_dir={lab.SETTINGS_DIR}" in args
    hidden = [a.split("=", 1)[1] for a in args if a.startswith("--ContentsManager.hide_globs=")]
    for generated in ("build", "*.egg-info", "__pycache__", "scripts", "benchmarks", "conftest.py"):
        assert generated in hidden
    for shown in ("START_HERE.ipynb", "notebooks", "exercises", "solutions", "README.md", "cnnbook"):
        assert not any(Path(shown).match(g) for g in hidden), f"{shown} would be hidden"
    assert "--KernelSpecManager.allowed_kernelspecs=cnnbook" in args
    assert "--MultiKernelManager.default_kernel_name=cnnbook" in args


def test_shipped_settings_turn_off_news_and_jupytext() -> None:
    overrides = json.loads((lab.SETTINGS_DIR / "overrides.json").read_text(encoding="utf-8"))
    notification = overrides["@jupyterlab/apputils-extension:notification"]
    assert notification["fetchNews"] == "false"  # the schema's values are the strings "true"/"false"/"none"
    assert notification["checkForUpdates"] is False
    assert overrides["@jupyterlab/notebook-extension:tracker"]["autoStartDefaultKernel"] is True
    page_config = json.loads((lab.SETTINGS_DIR / "page_config.json").read_text(encoding="utf-8"))
    assert "jupyterlab-jupytext" in page_config["disabledExtensions"]


def test_news_setting_names_match_jupyterlab_schema() -> None:
    # the override only works if the plugin and setting names are JupyterLab's own
    schema = Path(sys.prefix) / "share/jupyter/lab/schemas/@jupyterlab/apputils-extension/notification.json"
    if not schema.is_file():
        pytest.skip("JupyterLab is not installed in this environment")
    properties = json.loads(schema.read_text(encoding="utf-8"))["properties"]
    assert {c["const"] for c in properties["fetchNews"]["oneOf"]} >= {"false"}
    assert properties["checkForUpdates"]["type"] == "boolean"


def test_command_runs_jupyterlab_module_with_this_python() -> None:
    cmd = lab.lab_command(["--", "--no-browser"], python="/env/bin/python", as_root=False)
    assert cmd[:3] == ["/env/bin/python", "-m", "jupyterlab"]
    assert cmd[-1] == "--no-browser"  # the "--" separator from `python -m cnnbook lab -- ...` is gone
    assert "--" not in cmd
    assert "--allow-root" in lab.lab_command([], python="p", as_root=True)
    assert lab.lab_command(["--allow-root"], python="p", as_root=True).count("--allow-root") == 1
    assert "--allow-root" not in lab.lab_command([], python="p", as_root=False)


def test_windows_paths_with_spaces_survive_quoting() -> None:
    cmd = lab.lab_command(
        [], python=WIN_PYTHON, root=WIN_ROOT, settings=WIN_ROOT / "cnnbook" / "lab_settings", as_root=False
    )
    assert f"--ServerApp.root_dir={WIN_ROOT}" in cmd
    assert cmd[-1] == r"C:\Users\Jane Doe\cnnbook\START_HERE.ipynb"
    # what subprocess hands to CreateProcess on Windows, split back as the child's C runtime does
    assert _windows_argv(subprocess.list2cmdline(cmd)) == cmd


def test_main_on_windows_runs_a_child_and_returns_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    class FakePopen:
        def __init__(self, args: list[str]) -> None:
            calls.append(args)

        def wait(self) -> int:
            return 3

    def no_execv(*_args: object) -> None:
        raise AssertionError("os.execv must not be used on Windows")

    monkeypatch.setattr(lab, "_is_windows", lambda: True)
    monkeypatch.setattr(lab.os, "execv", no_execv)
    monkeypatch.setattr(lab.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(lab, "_has_cnnbook_kernel", lambda: True)
    monkeypatch.setattr(lab.sys, "executable", WIN_PYTHON)
    assert lab.main(["--no-browser"]) == 3
    (args,) = calls
    assert args[:3] == [WIN_PYTHON, "-m", "jupyterlab"]
    assert args[-1] == "--no-browser" or "--allow-root" in args


def test_main_elsewhere_replaces_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(lab, "_is_windows", lambda: False)
    monkeypatch.setattr(lab.os, "execv", lambda path, args: seen.append((path, args)))
    monkeypatch.setattr(lab, "_has_cnnbook_kernel", lambda: True)
    assert lab.main([]) == 0
    ((path, args),) = seen
    assert path == sys.executable
    assert args[:3] == [sys.executable, "-m", "jupyterlab"]


def test_main_without_jupyterlab_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(lab.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(lab.os, "execv", lambda *a: pytest.fail("must not start anything"))
    assert lab.main([]) == 1
    assert "JupyterLab is not installed" in capsys.readouterr().err


def test_main_registers_a_missing_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[list[str]] = []
    monkeypatch.setattr(lab, "_has_cnnbook_kernel", lambda: False)
    monkeypatch.setattr(lab.subprocess, "call", lambda args: registered.append(args) or 0)
    monkeypatch.setattr(lab, "_is_windows", lambda: False)
    monkeypatch.setattr(lab.os, "execv", lambda *a: None)
    lab.main([])
    assert registered == [[sys.executable, "-m", "cnnbook", "kernel"]]


@pytest.mark.parametrize(
    "typed",
    [["lab", "--port", "9000"], ["lab", "--", "--port", "9000"], ["lab", "--no-browser", "--port=9000"]],
)
def test_cli_hands_every_lab_option_to_jupyterlab(monkeypatch: pytest.MonkeyPatch, typed: list[str]) -> None:
    """`python -m cnnbook lab --port 9000` reaches JupyterLab (an option may come first)."""
    from cnnbook import __main__ as cli

    seen: list[list[str]] = []
    monkeypatch.setattr(lab, "main", lambda extra=(): seen.append(list(extra)) or 0)
    assert cli.main(typed) == 0
    assert seen
    assert "--port" in " ".join(seen[0])
    assert "9000" in " ".join(seen[0])
