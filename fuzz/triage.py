"""Group the failures a run saved (--save-dir) by crash site / problem and keep the smallest input of each.

    .venv/bin/python -m fuzz.triage SAVE_DIR [--copy-to fuzz/crashes]

Prints one block per group: how many cases, the smallest one's size, its mutation and the command that fails
(with ORIG = models/<zoo stem>.tflite for streaming seeds). With --copy-to, writes the smallest input of each
group as <problem>-<n>.tflite there, ready to be renamed to a short descriptive name.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
from pathlib import Path


def groups(save_dir: Path) -> dict[str, list[tuple[int, Path, dict]]]:
    out: dict[str, list[tuple[int, Path, dict]]] = collections.defaultdict(list)
    for meta in sorted(save_dir.glob("*.json")):
        res = json.loads(meta.read_text())
        model = meta.with_suffix(".tflite")
        size = model.stat().st_size if model.exists() else 0
        keys = res.get("sites") or [f"{p}: {d.split(': ', 2)[1] if ': ' in d else d}"[:120]
                                    for p, d in zip(res["problems"], res["details"])]
        for key in dict.fromkeys(keys):
            out[key].append((size, model, res))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.triage")
    ap.add_argument("save_dir", type=Path)
    ap.add_argument("--copy-to", type=Path, default=None)
    args = ap.parse_args(argv)
    g = groups(args.save_dir)
    for n, (key, items) in enumerate(sorted(g.items(), key=lambda kv: -len(kv[1]))):
        items.sort(key=lambda t: t[0])
        size, model, res = items[0]
        orig = res["seed"].split("@")[0] if "@" in res["seed"] else None
        print(f"[{len(items)} case(s)] {key}")
        print(f"    smallest: {model.name} ({size} bytes), seed {res['seed']}, case {res['index']}")
        print(f"    mutation: {res['mutation'][:200]}")
        for c in res["commands"]:
            print(f"    $ xstream {c}" + (f"   (ORIG = models/{orig}.tflite)" if "{ORIG}" in c else ""))
        if args.copy_to:
            args.copy_to.mkdir(parents=True, exist_ok=True)
            problem = key.split(":")[0].replace(" ", "-")
            shutil.copyfile(model, args.copy_to / f"{problem}-{n}.tflite")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
