"""The shells stay thin (issue 11): size limits, and imports that run shells -> ui/ -> stream/."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHELLS = {"app.py": 120, "cli_listen.py": 300}
MAX_FUNCTION_LINES = 80


def sources(*parts):
    for part in parts:
        p = ROOT / part
        yield from sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.is_file() else []


def imports(path: Path) -> set[str]:
    """Top-level package/module names and dotted modules imported anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize("shell,limit", SHELLS.items())
def test_shells_are_short(shell, limit):
    n = len((ROOT / shell).read_text(encoding="utf-8").splitlines())
    assert n <= limit, f"{shell} has {n} lines (at most {limit}): move the work into ui/ or stream/"


def test_no_long_functions_in_shells_or_ui():
    long = []
    for path in sources(*SHELLS, "ui"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_imports_run_shells_to_ui_to_stream():
    shells = {Path(s).stem for s in SHELLS}
    for path in sources("ui", "stream", "bench"):
        names = imports(path)
        assert not names & shells, f"{path.relative_to(ROOT)} imports a shell"
    for path in sources("ui/web"):
        assert not any(n.startswith("ui.terminal") for n in imports(path)), path
    for path in sources("ui/terminal"):
        assert not any(n.startswith("ui.web") for n in imports(path)), path
    # the engine proper never reaches up; the network front end (stream/server.py) shares ui's wording
    for path in sources("stream"):
        if path.name != "server.py":
            assert not any(n == "ui" or n.startswith("ui.") for n in imports(path)), path


def test_page_session_has_no_gradio():
    session = ROOT / "ui" / "web" / "session.py"
    if not session.is_file():
        pytest.skip("ui/web/session.py not present")
    assert not any(n.split(".")[0] == "gradio" for n in imports(session))
