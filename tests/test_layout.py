"""The layout holds: imports run one way, entry points -> front ends (ui/) -> engine (stream/), with
no cycles, and the shells stay thin (issues 11 and 19).

The import graph is built from the source with `ast`: every .py file under stream/ and ui/ plus the
entry points is a module (named as Python names it), every import statement anywhere in a file (at
the top or inside a function) is an edge, relative imports are resolved against the file's package.
An edge goes to the module an import names: `from pkg import sub` to pkg/sub.py when that is a
module, `from pkg import name` to pkg/__init__.py. (Python also runs a package's __init__ before
its submodules; those files are modules of the graph themselves and checked like any other.)
Imports made at run time from a string (`runpy`, `importlib`) are not edges: the shims
stream/server.py, stream/serve.py and stream/evaluate.py's `__main__` block run their front end
that way, so the engine package holds no import of a front end.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE, FRONT_ENDS = "stream", "ui"
ENTRY_POINTS = ("app.py", "cli_listen.py")
SHELLS = {"app.py": 120, "cli_listen.py": 300}
MAX_FUNCTION_LINES = 80
# packages whose files must exist: a missing (renamed, moved) folder fails instead of checking nothing
REQUIRED_PACKAGES = ("stream", "stream/models", "ui", "ui/web", "ui/terminal", "ui/net", "ui/history")
# packages under ui/ that are libraries every front end may use, like ui/report.py, not front ends
SHARED_PACKAGES = ("ui.history",)


# ---------------------------------------------------------------- the graph --------------
def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files(root: Path = ROOT) -> dict[str, Path]:
    """{module name: file} of stream/, ui/ and the entry points."""
    files = {}
    for pkg in (ENGINE, FRONT_ENDS):
        files.update({module_name(p, root): p for p in sorted((root / pkg).rglob("*.py"))})
    for entry in ENTRY_POINTS:
        if (root / entry).is_file():
            files[module_name(root / entry, root)] = root / entry
    return files


def imports_of(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """(absolute dotted name, line, whether the name may be a submodule) for every import in the
    file. `from X import a` gives X.a (a submodule, or else a name in X) and X."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, False) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                assert base, f"{path}:{node.lineno}: relative import beyond the top-level package"
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module
            out += [(f"{base}.{a.name}", node.lineno, True) for a in node.names if a.name != "*"]
            out.append((base, node.lineno, False))
    return out


def resolve(name: str, modules) -> str | None:
    """The project module `name` refers to (the longest known prefix), or None (not ours)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def import_graph(root: Path = ROOT) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    """(files, edges): edges[a][b] = the line of a's (first) import of b."""
    files = project_files(root)
    edges: dict[str, dict[str, int]] = {m: {} for m in files}
    for mod, path in files.items():
        for name, line, maybe_sub in imports_of(path, mod):
            if maybe_sub and name not in files:
                continue  # `from X import a` where a is a name in X: X itself is an edge as well
            target = resolve(name, files)
            if target is not None and target != mod:
                edges[mod].setdefault(target, line)
    return files, edges


def strongly_connected(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components of more than one module, i.e. cycles."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def one_cycle(component: list[str], edges, files, root: Path = ROOT) -> str:
    """A cycle through the component's first module, as 'a (file:line) -> b (...) -> a'."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(edges[node]):
            if child == start:
                path = paths[node] + [start]
                return " -> ".join(f"{a} ({files[a].relative_to(root)}:{edges[a][b]})"
                                   for a, b in zip(path, path[1:])) + f" -> {start}"
            if child in inside and child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    raise AssertionError(f"no cycle found in {component}")


def layer(module: str) -> int:
    top = module.split(".")[0]
    return {ENGINE: 0, FRONT_ENDS: 1}.get(top, 2)  # anything else of the graph is an entry point


def front_end_of(module: str) -> str | None:
    """ui.web.page -> ui.web: the front-end package a ui module belongs to (None: ui's shared modules
    and SHARED_PACKAGES)."""
    parts = module.split(".")
    if ".".join(parts[:2]) in SHARED_PACKAGES:
        return None
    return ".".join(parts[:2]) if parts[0] == FRONT_ENDS and len(parts) > 2 else None


def layering_problems(files, edges, root: Path = ROOT) -> list[str]:
    problems = []
    for a, targets in sorted(edges.items()):
        for b, line in sorted(targets.items()):
            where = f"{files[a].relative_to(root)}:{line}: {a} imports {b}"
            if layer(b) > layer(a):
                problems.append(f"{where} (upwards: {['engine', 'front end', 'entry point'][layer(b)]})")
            elif layer(a) == layer(b) == 1 and front_end_of(b) and front_end_of(b) != front_end_of(a):
                problems.append(f"{where} ({front_end_of(b)} is a front end of its own: only its own modules "
                                f"and the entry points import it; share through ui/'s own modules)")
            elif layer(a) == layer(b) == 2:
                problems.append(f"{where} (nothing imports an entry point)")
    return problems


def cycle_problems(files, edges, root: Path = ROOT) -> list[str]:
    return [f"import cycle: {one_cycle(c, edges, files, root)}" for c in strongly_connected(edges)]


# ---------------------------------------------------------------- the checks -------------
@pytest.mark.parametrize("folder", REQUIRED_PACKAGES)
def test_each_package_is_there(folder):
    assert (ROOT / folder / "__init__.py").is_file(), f"{folder}/ is missing: the layout checks would see nothing"
    files = project_files()
    prefix = folder.replace("/", ".")
    assert any(m == prefix or m.startswith(prefix + ".") for m in files if m != prefix), f"{folder}/ has no modules"


def test_entry_points_are_there():
    missing = [e for e in ENTRY_POINTS if not (ROOT / e).is_file()]
    assert not missing, f"entry points missing: {missing}"


def test_graph_sees_the_imports():
    """Guards the checks themselves: known edges (absolute, relative and inside functions) are found."""
    files, edges = import_graph()
    assert len(files) >= 40 and sum(len(t) for t in edges.values()) >= 60, (len(files), edges)
    assert "stream.engine" in edges["ui.net.api"]  # absolute
    assert "ui.net.api" in edges["ui.net.ray_ingress"]  # relative (from .api import ...)
    assert "stream.models.base" in edges["stream.models.hf"]  # relative, a sibling
    assert "stream.errors" in edges["stream.models.musicnn.model"]  # relative, two levels up
    assert "ui.terminal.devices" in edges["ui.terminal.sources"]  # from . import devices
    assert "stream.client" in edges["ui.terminal.listener"]  # inside a function


def test_imports_run_one_way():
    """Nothing in stream/ imports ui/ or an entry point; ui/ imports no entry point; the front-end
    packages (ui/web, ui/terminal, ui/net) do not import each other."""
    files, edges = import_graph()
    problems = layering_problems(files, edges)
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    files, edges = import_graph()
    problems = cycle_problems(files, edges)
    assert not problems, "\n".join(problems)


def test_the_checks_fail_on_an_upward_import_and_a_cycle(tmp_path):
    """A broken copy of a small tree: an engine module importing a front end, and two modules
    importing each other (one relatively, one inside a function) are both reported."""
    for name, text in {
        "stream/__init__.py": "",
        "stream/engine.py": "from .files import x\n",
        "stream/files.py": "def f():\n    from stream import engine\n",
        "stream/bad.py": "from ui.report import dumps\n",
        "ui/__init__.py": "",
        "ui/report.py": "import json\n",
        "ui/web/__init__.py": "",
        "ui/web/page.py": "from ..terminal import view\n",
        "ui/terminal/__init__.py": "",
        "ui/terminal/view.py": "from ui import report\n",
        "app.py": "import ui.web.page\n",
        "cli_listen.py": "import app\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    files, edges = import_graph(tmp_path)
    layering = layering_problems(files, edges, tmp_path)
    cycles = cycle_problems(files, edges, tmp_path)
    assert any("stream.bad imports ui.report (upwards: front end)" in p for p in layering), layering
    assert any("ui.web.page imports ui.terminal.view (ui.terminal is a front end of its own" in p for p in layering), layering
    assert any("cli_listen imports app (nothing imports an entry point)" in p for p in layering), layering
    assert cycles == ["import cycle: stream.engine (stream/engine.py:1) -> stream.files (stream/files.py:2) "
                      "-> stream.engine"], cycles


def test_imports_inside_functions_say_why():
    """An import inside a function hides a dependency; it is there only where it buys something (an
    optional dependency, a heavy one kept off a --help or edge path), said in a comment with
    "inside:" on its line or one of the two lines above."""
    files = project_files()
    silent = []
    for path in files.values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for func in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    near = lines[max(node.lineno - 3, 0):node.lineno]
                    if not any("# inside:" in line for line in near):
                        silent.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not silent, "imports inside functions without a '# inside: why' comment:\n" + "\n".join(sorted(set(silent)))


def test_page_session_does_not_import_gradio():
    code = "import sys, ui.web.session; print('gradio' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "False", "importing ui.web.session imported gradio"


def test_bench_imports_no_entry_point():
    shells = {Path(e).stem for e in ENTRY_POINTS}
    bench = sorted((ROOT / "bench").glob("*.py"))
    assert bench, "bench/ has no scripts"
    for path in bench:
        names = {name.split(".")[0] for name, _, _ in imports_of(path, f"bench.{path.stem}")}
        assert not names & shells, f"{path.relative_to(ROOT)} imports an entry point"


# ---------------------------------------------------------------- thin shells ------------
@pytest.mark.parametrize("shell,limit", SHELLS.items())
def test_shells_are_short(shell, limit):
    n = len((ROOT / shell).read_text(encoding="utf-8").splitlines())
    assert n <= limit, f"{shell} has {n} lines (at most {limit}): move the work into ui/ or stream/"


def test_no_long_functions_in_shells_or_ui():
    paths = [ROOT / s for s in SHELLS] + sorted((ROOT / FRONT_ENDS).rglob("*.py"))
    assert len(paths) > len(SHELLS)
    long = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


# ---------------------------------------------------------------- tests, bench, tools ------
def _top_level_defs(path: Path) -> set[str]:
    """Functions and classes defined at the top of a file, fixtures left out (a fixture named like
    a helper is a value of the test's own, not a second copy of the helper)."""
    out = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not any("fixture" in ast.unparse(d) for d in node.decorator_list):
                out.add(node.name)
    return out


def test_shared_test_helpers_are_defined_once():
    shared = {}
    for path in sorted((ROOT / "tests" / "support").glob("*.py")) + sorted((ROOT / "harness").glob("*.py")):
        for name in _top_level_defs(path):
            assert name not in shared, f"{name} is defined in {shared[name]} and {path.relative_to(ROOT)}"
            shared[name] = path.relative_to(ROOT)
    assert {"free_port", "wait_for", "served", "ServerProcess", "browser_page", "make_tiny_checkpoint"} <= set(shared)
    again = [f"{path.relative_to(ROOT)}: {name} (see {shared[name]})"
             for folder in ("tests", "bench", "tools") for path in sorted((ROOT / folder).glob("*.py"))
             for name in sorted(_top_level_defs(path) & set(shared))]
    assert not again, "helpers defined again instead of imported:\n" + "\n".join(again)


@pytest.mark.parametrize("folder", ["bench", "tools"])
def test_bench_and_tools_are_packages_that_use_no_test_code(folder):
    """Run as `python -m bench.x` / `python -m tools.y` from the root: no sys.path edits, and
    nothing from tests/ (what they share with the tests lives in harness/)."""
    assert (ROOT / folder / "__init__.py").is_file()
    bad = []
    for path in sorted((ROOT / folder).glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "sys.path" in text:
            bad.append(f"{path.relative_to(ROOT)}: edits sys.path")
        names = {name.split(".")[0] for name, _, _ in imports_of(path, f"{folder}.{path.stem}")}
        if names & {"tests", "conftest", "support"}:
            bad.append(f"{path.relative_to(ROOT)}: imports {sorted(names & {'tests', 'conftest', 'support'})}")
    assert not bad, bad
