"""The distribution: pyproject.toml agrees with requirements*.txt, the wheel carries the code, the bundled
weights with their license and the console scripts, and `genre-app` passes its arguments to app.py.

The wheel is built for real (setuptools, no network) from a copy of the checkout (its git-tracked and new,
not ignored files), so the test does not write into the repository."""
from __future__ import annotations

import email
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ["MTT_musicnn.safetensors", "MSD_musicnn.safetensors", "MTT_vgg.safetensors", "MSD_vgg.safetensors",
           "LICENSE", "README.md", "robust/MTT_musicnn.safetensors", "robust/MSD_musicnn.safetensors",
           "robust/MODEL_CARD.md", "track/MTT_musicnn.safetensors", "track/MSD_musicnn.safetensors",
           "track/MODEL_CARD.md"]  # robust/: the "musicnn-room" student; track/: the default "musicnn"
# onnxruntime-web for the kiosk's device mode: git-ignored (~15 MB), vendored by tools/vendor_ort_web.py
# (scripts/setup.sh runs it) and shipped in the wheel as package data.
ORT_WEB = "ui/net/kiosk_assets/device/ort"
ORT_WEB_FILES = ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "LICENSE"]
# Left out of the copy the wheel is built from when the checkout is not a git repository.
NOT_SHIPPED = (".git", ".venv", "build", "dist", "test-artifacts", "__pycache__", "*.egg-info", "*.pyc")


def _key(req: str):
    r = Requirement(req)
    return canonicalize_name(r.name), tuple(sorted(r.extras)), str(r.specifier), str(r.marker or "")


def _requirements_file(name: str) -> dict:
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith(("#", "-")):  # -r requirements.txt: listed separately
            out[_key(line)[0]] = line
    return out


def _diff(listed: dict, declared: list, where: str, source: str) -> list:
    declared = {_key(r)[0]: r for r in declared}
    problems = [f"{source} has {listed[n]!r}; add it to {where}" for n in listed if n not in declared]
    problems += [f"{where} has {declared[n]!r}, {source} does not" for n in declared if n not in listed]
    problems += [f"{where} has {declared[n]!r} but {source} has {listed[n]!r}" for n in declared
                 if n in listed and _key(declared[n]) != _key(listed[n])]
    return problems


def test_pyproject_lists_what_the_requirements_files_list():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    problems = _diff(_requirements_file("requirements.txt"), project["dependencies"],
                     "pyproject.toml [project] dependencies", "requirements.txt")
    problems += _diff(_requirements_file("requirements-dev.txt"), project["optional-dependencies"]["dev"],
                      "pyproject.toml [project.optional-dependencies] dev", "requirements-dev.txt")
    problems += _diff(_requirements_file("requirements-serve.txt"), project["optional-dependencies"]["serve"],
                      "pyproject.toml [project.optional-dependencies] serve", "requirements-serve.txt")
    assert not problems, "\n".join(problems)


def test_edge_requirements_are_the_runtime_ranges_plus_serve():
    """requirements-edge.txt (an edge of a Ray Serve deployment): a subset of requirements.txt
    with the same ranges, and Ray Serve through requirements-serve.txt."""
    edge, runtime = _requirements_file("requirements-edge.txt"), _requirements_file("requirements.txt")
    assert edge, "requirements-edge.txt lists no package"
    problems = [f"requirements-edge.txt has {edge[n]!r}, requirements.txt does not" for n in edge if n not in runtime]
    problems += [f"requirements-edge.txt has {edge[n]!r} but requirements.txt has {runtime[n]!r}" for n in edge
                 if n in runtime and _key(edge[n]) != _key(runtime[n])]
    assert not problems, "\n".join(problems)
    includes = [l.split(" #")[0].strip() for l in (ROOT / "requirements-edge.txt").read_text().splitlines()
                if l.startswith("-r")]
    assert includes == ["-r requirements-serve.txt"], includes
    assert not {"torch", "transformers"} & set(edge)  # an edge runs without them


def _copy_checkout(dest: Path) -> None:
    """The files of a clean checkout plus new ones (not .venv, caches or build outputs)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):  # not a git checkout (e.g. an unpacked sdist)
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
        return
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # deleted but not yet committed files are listed too
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    if (ROOT / ORT_WEB).is_dir():  # ignored by git, but part of a built checkout
        shutil.copytree(ROOT / ORT_WEB, dest / ORT_WEB, dirs_exist_ok=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    src = tmp_path_factory.mktemp("src") / "checkout"
    _copy_checkout(src)
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"building the wheel failed:\n{proc.stdout}\n{proc.stderr}"
    (path,) = out.glob("live_genre-*.whl")
    return zipfile.ZipFile(path)


def _dist_info(whl: zipfile.ZipFile, name: str) -> str:
    (member,) = [n for n in whl.namelist() if n.split("/")[0].endswith(".dist-info") and n.split("/", 1)[1] == name]
    return whl.read(member).decode()


def test_wheel_carries_code_weights_and_their_license(wheel):
    names = set(wheel.namelist())
    for f in WEIGHTS:
        assert f"stream/models/musicnn/weights/{f}" in names
        assert wheel.getinfo(f"stream/models/musicnn/weights/{f}").file_size == \
            (ROOT / "stream/models/musicnn/weights" / f).stat().st_size
    assert "stream/models/musicnn/tags.json" in names and "stream/models/musicnn/genres.json" in names
    # the device page's presence head and its model card
    assert {"stream/models/musicnn/presence_head.json", "stream/models/musicnn/PRESENCE_HEAD.md"} <= names
    for py in [*ROOT.glob("stream/**/*.py"), *ROOT.glob("ui/**/*.py")]:  # new modules are picked up by themselves
        assert py.relative_to(ROOT).as_posix() in names
    assert {"ui/web/music_mic.js", "ui/web/page.css"} <= names  # the page's assets (package data)
    kiosk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ui/net/kiosk_assets").iterdir() if p.is_file()}
    assert len(kiosk) >= 4 and kiosk <= names, kiosk - names  # the kiosk screen (served at /)
    assert {"app.py", "cli_listen.py"} <= names
    tops = {n.split("/")[0] for n in names}
    assert not tops & {"tests", "bench", "tools", "scripts"}, tops
    # The ISC notice of the weights also sits in the metadata, where license tools look.
    assert any(n.endswith(".dist-info/licenses/stream/models/musicnn/weights/LICENSE") for n in names)


def test_the_code_is_apache_2_and_the_wheel_carries_both_licences(wheel):
    """The code's licence (Apache-2.0) in the metadata and beside the weights' ISC notice; the README says the same."""
    meta = email.message_from_string(_dist_info(wheel, "METADATA"))
    assert meta["License-Expression"] == "Apache-2.0"
    assert "Apache License" in _dist_info(wheel, "licenses/LICENSE") and "Version 2.0" in _dist_info(wheel, "licenses/LICENSE")
    assert "Permission to use, copy, modify" in _dist_info(wheel, "licenses/stream/models/musicnn/weights/LICENSE")
    front = (ROOT / "README.md").read_text().split("---")[1]
    assert re.search(r"^license: apache-2.0\b", front, re.M), front


def test_wheel_metadata_matches_requirements_and_names_the_scripts(wheel):
    meta = email.message_from_string(_dist_info(wheel, "METADATA"))
    assert meta["Name"] == "live-genre"
    assert meta["Requires-Python"] == ">=3.10"
    requires = meta.get_all("Requires-Dist")
    runtime = {_key(r)[0]: r for r in requires if "extra ==" not in r}
    assert not _diff(_requirements_file("requirements.txt"), list(runtime.values()), "METADATA", "requirements.txt")
    assert {"dev", "serve"} <= set(meta.get_all("Provides-Extra"))
    serve = [r.split(";")[0].strip() for r in requires if 'extra == "serve"' in r]
    assert not _diff(_requirements_file("requirements-serve.txt"), serve, "METADATA serve extra", "requirements-serve.txt")

    scripts = {}
    section = None
    for line in _dist_info(wheel, "entry_points.txt").splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and section == "console_scripts":
            name, target = (s.strip() for s in line.split("=", 1))
            scripts[name] = target
    assert set(scripts) == {"genre-app", "genre-listen", "genre-serve", "genre-serve-ray", "genre-evaluate",
                            "genre-history", "genre-kiosk-export"}
    # Each target exists (imported in a fresh interpreter: importing app would start building the page).
    for target in scripts.values():
        module, func = target.split(":")
        probe = "import importlib.util, sys; spec = importlib.util.find_spec(sys.argv[1]); print(spec.origin)"
        proc = subprocess.run([sys.executable, "-c", probe, module], cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        source = Path(proc.stdout.strip()).read_text()
        assert f"def {func}(" in source, f"{target}: no function {func} in {proc.stdout.strip()}"


def _genre_app(*args, timeout=120):
    # What the `genre-app` console script does, without needing the package installed.
    code = "import sys; sys.argv[0] = 'genre-app'; from ui.console import app; app()"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_genre_app_passes_its_arguments_to_app_py():
    proc = _genre_app("--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: genre-app"), proc.stdout[:300]
    assert "--model" in proc.stdout and "--port" in proc.stdout
    bad = _genre_app("--no-such-option")
    assert bad.returncode == 2, (bad.returncode, bad.stderr[-2000:])
    assert "genre-app: error" in bad.stderr and "--no-such-option" in bad.stderr


def test_wheel_carries_the_device_mode_and_onnxruntime_web_with_its_licence(wheel):
    """The kiosk's device mode needs no CDN: its scripts and onnxruntime-web ship in the wheel."""
    if not (ROOT / ORT_WEB / "ort-wasm-simd-threaded.wasm").is_file():
        pytest.skip("onnxruntime-web is not vendored: python tools/vendor_ort_web.py (scripts/setup.sh runs it)")
    names = set(wheel.namelist())
    scripts = {f"ui/net/kiosk_assets/device/{n}" for n in ("engine.js", "device.js", "worker.js")}
    assert scripts <= names, scripts - names
    for f in ORT_WEB_FILES:
        assert f"{ORT_WEB}/{f}" in names, f
        assert wheel.getinfo(f"{ORT_WEB}/{f}").file_size == (ROOT / ORT_WEB / f).stat().st_size
    assert "MIT License" in wheel.read(f"{ORT_WEB}/LICENSE").decode()
