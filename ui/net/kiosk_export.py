"""`genre-kiosk-export DIR`: the kiosk screen in device mode as a folder of static files.

    genre-kiosk-export /srv/kiosk            # then serve /srv/kiosk from any static HTTPS host

The folder holds the page, its scripts, the vendored onnxruntime-web and the model's ONNX graphs
(~22 MB), laid out as the server's own URLs (index.html, kiosk/..., kiosk/device/...), so the page
runs unchanged: it classifies on the device and needs no Python server at all. docs/kiosk-device.md.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROG = "genre-kiosk-export"


def export(dest: Path, model, engine_config=None) -> list[Path]:
    """Write the folder; returns the files written. Raises DeviceModeUnavailable for a model that
    cannot run on a device, FileNotFoundError when onnxruntime-web is not vendored."""
    # inside: the engine, numpy and the graphs load only when a folder is written, not for --help
    from stream.engine import StreamEngine  # inside: (as above)
    from ui.colours import SILENCE_COLOUR, genre_colours  # inside: (as above)

    from .device_model import device_files  # inside: (as above)
    from .kiosk import ASSETS, FILES  # inside: (as above)
    from .kiosk_device import DEVICE_DIR, ORT_DIR, ORT_FILES, SCRIPTS  # inside: (as above)

    missing = [n for n in ORT_FILES if not (ORT_DIR / n).is_file()]
    if missing:
        raise FileNotFoundError(f"onnxruntime-web is not vendored ({', '.join(missing)} missing in {ORT_DIR}); "
                                "run: python tools/vendor_ort_web.py")
    engine = StreamEngine(model, engine_config, background=False)
    try:
        genres = engine.genres
    finally:
        engine.close()
    config = {"colours": genre_colours(genres, genres), "silence": SILENCE_COLOUR, "compute": "device",
              "device_report": False}  # no server to report to
    html = (ASSETS / "index.html").read_text(encoding="utf-8").replace(
        "{{CONFIG}}", json.dumps(config).replace("</", "<\\/"))
    out: dict[str, bytes] = {"index.html": html.encode()}
    out.update({f"kiosk/{n}": (ASSETS / n).read_bytes() for n in FILES})
    out.update({f"kiosk/device/{n}": (DEVICE_DIR / n).read_bytes() for n in SCRIPTS})
    out.update({f"kiosk/device/ort/{n}": (ORT_DIR / n).read_bytes() for n in ORT_FILES})
    out.update({f"kiosk/device/model/{n}": b for n, b in device_files(model, engine_config).items()})
    written = []
    for rel, body in out.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        written.append(path)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("dir", type=Path, help="folder to write (created; must be empty unless --force)")
    p.add_argument("--model", default="musicnn", help="a bundled musicnn spec (default musicnn)")
    p.add_argument("--window", type=float, help="window in seconds (default: the model's, 9)")
    p.add_argument("--hop", type=float, help="seconds between readouts (default 1)")
    p.add_argument("--smoothing", type=float, help="smoothing time constant in seconds (default 4)")
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty")
    args = p.parse_args(argv)
    if args.dir.exists() and not args.dir.is_dir():
        p.error(f"{args.dir} exists and is not a folder")
    if args.dir.is_dir() and any(args.dir.iterdir()) and not args.force:
        p.error(f"{args.dir} is not empty; choose an empty folder or pass --force")
    # inside: after the flags are checked, so --help and a bad flag answer at once
    from stream.config import EngineConfig  # inside: (as above)
    from stream.errors import ModelLoadError  # inside: (as above)
    from stream.models.musicnn.model import load_bundled  # inside: (as above)

    from .device_model import DeviceModeUnavailable  # inside: (as above)

    config = EngineConfig(window_s=args.window, hop_s=args.hop, **({} if args.smoothing is None
                                                                    else {"smoothing_s": args.smoothing}))
    try:
        model = load_bundled(args.model)
        files = export(args.dir, model, config)
    except (ModelLoadError, DeviceModeUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in files)
    print(f"{PROG}: {len(files)} files, {size / 1e6:.1f} MB in {args.dir}; serve it from any static HTTPS host "
          f"(docs/kiosk-device.md), e.g. python -m http.server -d {args.dir} 8080 behind a TLS proxy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
