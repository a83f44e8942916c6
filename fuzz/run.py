"""The long fuzz run: N cases over J processes, a summary, and the failing inputs saved for triage.

    .venv/bin/python -m fuzz.run --cases 10000 --jobs 2 --seed 1 --summary fuzz/last_run.json

Replay one case (prints its mutation, commands and outcome; --keep writes its input under --save-dir):

    .venv/bin/python -m fuzz.run --seed 1 --replay 1234 --keep
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import multiprocessing
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import cases as cases_mod
from .runner import PROBLEMS, TIMEOUT, run_case

_OPTS: dict = {}


def _init(opts: dict) -> None:
    _OPTS.update(opts)
    cases_mod.seeds()  # build the seed corpus once per worker


def _one(index: int) -> dict:
    o = _OPTS
    try:
        case = cases_mod.make_case(o["seed"], index, subprocess_fraction=o["subprocess_fraction"],
                                   tflm_fraction=o["tflm_fraction"])
    except Exception as e:  # a generator bug: report it, never count it as an xstream result
        return {"index": index, "generator_error": f"{type(e).__name__}: {e}", "problems": []}
    res = run_case(case, o["workdir"], timeout=o["timeout"])
    if res["problems"] and o["save_dir"]:
        save = Path(o["save_dir"])
        save.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256(case.data).hexdigest()[:10]
        stem = f"{res['problems'][0]}-{index}-{h}"
        (save / f"{stem}.tflite").write_bytes(case.data)
        (save / f"{stem}.json").write_text(json.dumps(res, indent=1))
        res["saved"] = stem
    return res


def code_fingerprint() -> dict:
    """Which xstream the run tested: sha256 over xstream/**/*.py (path and bytes), and git HEAD if there is one."""
    import subprocess

    h = hashlib.sha256()
    root = cases_mod.REPO / "xstream"
    files = sorted(root.rglob("*.py"))
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    try:
        head = subprocess.run(["git", "-C", str(cases_mod.REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except OSError:
        head = None
    return {"xstream_py_sha256": h.hexdigest()[:16], "files": len(files), "git_head": head}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per case before it counts as a hang")
    ap.add_argument("--subprocess-fraction", type=float, default=0.03,
                    help="share of cases run as real `python -m xstream` processes")
    ap.add_argument("--tflm-fraction", type=float, default=0.1,
                    help="share of verify commands run with --runtime tflm (the TFLite Micro interpreter)")
    ap.add_argument("--save-dir", default=None, help="where to write failing inputs (default: none)")
    ap.add_argument("--summary", default=None, help="write the summary JSON here")
    ap.add_argument("--replay", type=int, default=None, help="run only this case index and print everything")
    ap.add_argument("--keep", action="store_true", help="with --replay: save the case's input in --save-dir or .")
    args = ap.parse_args(argv)

    workdir = tempfile.mkdtemp(prefix="xstream-fuzz-")
    opts = {"seed": args.seed, "timeout": args.timeout, "subprocess_fraction": args.subprocess_fraction,
            "tflm_fraction": args.tflm_fraction,
            "workdir": workdir, "save_dir": args.save_dir}
    if args.replay is not None:
        _init(opts)
        case = cases_mod.make_case(args.seed, args.replay, subprocess_fraction=args.subprocess_fraction,
                                   tflm_fraction=args.tflm_fraction)
        print(f"case {case.index}: seed {case.seed}, mutation {case.mutation}, {len(case.data)} bytes")
        if args.keep:
            out = Path(args.save_dir or ".") / f"case-{args.seed}-{args.replay}.tflite"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(case.data)
            print(f"input written to {out}")
        print(json.dumps(run_case(case, workdir, timeout=args.timeout), indent=1))
        return 0

    t0 = time.monotonic()
    problems = collections.Counter()
    exits = collections.Counter()
    failing: list[dict] = []
    generator_errors = 0
    slowest = (0.0, None)
    modes = collections.Counter()
    sites: dict[str, list[int]] = collections.defaultdict(list)
    times: dict[str, list[float]] = collections.defaultdict(list)
    done = 0
    indices = range(args.start, args.start + args.cases)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.jobs, initializer=_init, initargs=(opts,)) as pool:
        for res in pool.imap_unordered(_one, indices, chunksize=4):
            done += 1
            if "generator_error" in res:
                generator_errors += 1
                print(f"generator error in case {res['index']}: {res['generator_error']}", file=sys.stderr)
                continue
            modes[res["mode"]] += 1
            for cmd, code in res["exits"]:
                exits[f"{cmd} {'skipped' if code is None else code}"] += 1
            for p in res["problems"]:
                problems[p] += 1
            for site in res.get("sites", []):
                sites[site].append(res["index"])
            for cmd, sec in res.get("times", []):
                times[cmd].append(sec)
            if res["problems"]:
                failing.append({k: res[k] for k in ("index", "seed", "mutation", "problems", "details",
                                                    "commands") if k in res} | {"saved": res.get("saved")})
            if res["seconds"] > slowest[0]:
                slowest = (res["seconds"], res["index"])
            if done % 500 == 0:
                print(f"{done}/{args.cases} cases, {time.monotonic() - t0:.0f} s, problems {dict(problems)}",
                      file=sys.stderr, flush=True)
    wall = time.monotonic() - t0
    command = "python -m fuzz.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    summary = {
        "command": command,
        "code": code_fingerprint(),
        "cases": done - generator_errors,
        "generator_errors": generator_errors,
        "wall_seconds": round(wall, 1),
        "jobs": args.jobs,
        "seed": args.seed,
        "timeout_seconds": args.timeout,
        "modes": dict(modes),
        "problems": {p: problems.get(p, 0) for p in PROBLEMS},
        "cases_with_problems": len(failing),
        "exit_codes": dict(sorted(exits.items())),
        "slowest_case": {"seconds": slowest[0], "index": slowest[1]},
        "command_seconds": {c: {"runs": len(v), "mean": round(sum(v) / len(v), 3), "max": max(v)}
                            for c, v in sorted(times.items())},
        "crash_sites": {k: {"cases": len(v), "examples": sorted(v)[:5]}
                        for k, v in sorted(sites.items(), key=lambda kv: -len(kv[1]))},
        "failing": failing[:200],
    }
    text = json.dumps(summary, indent=1)
    if args.summary:
        Path(args.summary).write_text(text + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "failing"}, indent=1))
    for f in failing[:30]:
        print(f"case {f['index']} [{', '.join(f['problems'])}] {f['seed']}: {f['mutation']}\n    "
              + "\n    ".join(f["details"][:3]))
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
