"""Vendor onnxruntime-web (npm, MIT) into the kiosk's package data, reproducibly.

    python tools/vendor_ort_web.py            # fetch with `npm pack`, check, unpack (scripts/setup.sh runs it)
    python tools/vendor_ort_web.py --check    # exit 1 unless the vendored files are there and intact

The kiosk's device mode runs the model in the browser with onnxruntime-web's WebAssembly build. Its
.wasm is ~15 MB, so it is not committed: this script fetches one pinned release through npm's own
client, checks the tarball against the registry's sha512 integrity pinned below, and copies only the
three files the page loads (the ES-module API, the Emscripten glue, the SIMD WebAssembly binary),
with the licence beside them, into ui/net/kiosk_assets/device/ort/ (git-ignored, carried by the
wheel as package data). No CDN is used at run time.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "1.31.1"
INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
DEST = Path(__file__).resolve().parents[1] / "ui" / "net" / "kiosk_assets" / "device" / "ort"

# The npm tarball carries no licence file; package.json says "MIT". This is the MIT licence as the
# onnxruntime repository (github.com/microsoft/onnxruntime, LICENSE) states it.
LICENSE = """onnxruntime-web {version} (https://www.npmjs.com/package/onnxruntime-web), vendored unmodified:
{files}

MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def _manifest(dest: Path) -> Path:
    return dest / "SHA256SUMS"


def check(dest: Path = DEST) -> list[str]:
    """Problems with the vendored copy (empty: complete and as this script wrote it)."""
    sums = _manifest(dest)
    if not sums.is_file():
        return [f"{dest} holds no vendored onnxruntime-web (run: python tools/vendor_ort_web.py)"]
    problems = []
    listed = dict(line.split("  ", 1)[::-1] for line in sums.read_text().splitlines() if line.strip())
    for name in (*FILES, "LICENSE"):
        f = dest / name
        if not f.is_file():
            problems.append(f"{f} is missing")
        elif hashlib.sha256(f.read_bytes()).hexdigest() != listed.get(name):
            problems.append(f"{f} differs from what was vendored")
    return problems


def vendor(dest: Path = DEST) -> None:
    with tempfile.TemporaryDirectory(prefix="ort-web-") as tmp:
        try:
            subprocess.run(["npm", "pack", f"onnxruntime-web@{VERSION}", "--silent"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
        except FileNotFoundError:
            sys.exit("vendor_ort_web: npm is not installed (Debian: apt-get install npm)")
        except subprocess.CalledProcessError as exc:
            sys.exit(f"vendor_ort_web: npm pack onnxruntime-web@{VERSION} failed ({exc.returncode}); "
                     "is the npm registry reachable?")
        tgz = Path(tmp) / f"onnxruntime-web-{VERSION}.tgz"
        algo, want = INTEGRITY.split("-", 1)
        got = base64.b64encode(hashlib.new(algo, tgz.read_bytes()).digest()).decode()
        if got != want:
            sys.exit(f"vendor_ort_web: {tgz.name} does not match the pinned integrity {INTEGRITY}")
        with tarfile.open(tgz) as tar:
            members = {m.name: m for m in tar.getmembers()}
            dest.mkdir(parents=True, exist_ok=True)
            for name in FILES:
                src = tar.extractfile(members[f"package/dist/{name}"])
                with open(dest / name, "wb") as out:
                    shutil.copyfileobj(src, out)
    (dest / "LICENSE").write_text(LICENSE.format(version=VERSION, files=", ".join(FILES)))
    lines = [f"{hashlib.sha256((dest / n).read_bytes()).hexdigest()}  {n}" for n in (*FILES, "LICENSE")]
    _manifest(dest).write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check the vendored copy")
    ap.add_argument("--force", action="store_true", help="fetch again even if an intact copy is there")
    args = ap.parse_args(argv)
    problems = check()
    if args.check:
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    if problems or args.force:
        vendor()
        problems = check()
        if problems:
            sys.exit("vendor_ort_web: " + "; ".join(problems))
    size = sum((DEST / n).stat().st_size for n in FILES)
    print(f"onnxruntime-web {VERSION}: {len(FILES)} files, {size / 1e6:.1f} MB in {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
