"""Run one fuzz case through the CLI and judge the outcome.

Two modes:
  fork        (default, fast) the case runs in a forked child of this process, through click's CliRunner with
              catch_exceptions=True; the parent kills it after the time limit (a hang), sees it die of a signal
              (a native crash), and captures what native code writes to file descriptors 1 and 2.
  subprocess  every command is a real `python -m xstream ...` process under a timeout; stderr is the real one.

Problems counted (a case may have several):
  crash           exit code 4 ("xstream: internal error"), an exception escaping the CLI, or death by a signal
  traceback       "Traceback" in what a user would see
  hang            the case took longer than the time limit
  exit-code       an exit code outside what the command may return (inspect 0/2, convert 0/1/2, verify 0/1/2/3,
                  convert IN IN: 2), or inspect refusing a model (2) that convert then accepts
  stderr          an error that is not exactly one stderr line starting "xstream: error: ", or stderr on success
                  other than `xstream: note:` lines
  native-stderr   lines written to fd 2 by native code (LiteRT logs) besides xstream's one line
  input-changed   a byte of an input file changed
  partial-output  OUT exists after a failed convert, or a .xstream-*.tmp file is left behind
  nondeterminism  the same convert twice gave different bytes
  bad-json        --json but stdout is not one strict JSON object (on errors: {"error": ...})
  reader-fallback the reader's last-resort message (an unchecked exception inside reading)
  verify-different  verify of a model against our own conversion of it said DIFFERENT
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .cases import REPO, Case

TIMEOUT = 10.0
MEMORY_LIMIT = 6 << 30  # address space of one case (fork mode)
PROBLEMS = ("crash", "traceback", "hang", "exit-code", "stderr", "native-stderr", "input-changed", "partial-output",
            "nondeterminism", "bad-json", "reader-fallback", "verify-different")
FALLBACK = "this is a reader bug"
INTERNAL = 4  # xstream's exit code for an internal error (xstream/errors.py): a crash


def preload() -> None:
    """Import the CLI and the interpreters once, so that forked cases start warm."""
    import click.testing  # noqa: F401

    import xstream.cli  # noqa: F401
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        pass


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _strict_json(text: str) -> bool:
    def bad(c):
        raise ValueError(c)

    try:
        json.loads(text, parse_constant=bad)
        return True
    except ValueError:
        return False


def _paths(d: Path) -> dict[str, str]:
    return {"IN": str(d / "in.tflite"), "OUT": str(d / "out.tflite"), "OUT2": str(d / "out2.tflite"),
            "ORIG": str(d / "orig.tflite")}


def _fill(args: list[str], paths: dict[str, str]) -> list[str]:
    return [a.format(**paths) for a in args]


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def crash_site(tb: str) -> str:
    """'xstream/verify.py:123 verify: ValueError: ...' for the innermost xstream frame of a traceback."""
    frames = [(f, ln, fn) for f, ln, fn in _FRAME.findall(tb or "") if "/xstream/" in f]
    lines = [ln for ln in (tb or "").strip().splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else ""
    if last.startswith("xstream: "):
        last = lines[-2].strip() if len(lines) > 1 else last
    where = "?"
    if frames:
        f, ln, fn = frames[-1]
        where = f"xstream/{f.split('/xstream/')[-1]}:{ln} {fn}"
    return f"{where}: {last[:160]}"


def _tail(tb: str, n: int = 6) -> str:
    lines = [ln for ln in tb.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def _run_in_child(case: Case, paths: dict[str, str], w: int, native_out: int, native_err: int) -> None:
    """Child side of fork mode: run each command, write one JSON line per command to fd `w`."""
    try:
        os.dup2(native_out, 1)
        os.dup2(native_err, 2)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        except (ValueError, OSError):
            pass
        from click.testing import CliRunner

        from xstream.cli import main

        exits: list[int | None] = []
        for cmd in case.commands:
            if cmd.requires is not None and exits[cmd.requires] != 0:
                exits.append(None)
                os.write(w, (json.dumps({"skipped": True}) + "\n").encode())
                continue
            args = _fill(cmd.args, paths)
            t0 = time.monotonic()
            r = CliRunner().invoke(main, args, catch_exceptions=True)
            rec = {"exit": r.exit_code, "stdout": r.stdout[:4000], "stderr": r.stderr[-4000:],
                   "seconds": round(time.monotonic() - t0, 3)}
            if "--json" in args and r.exit_code in (0, 1, 2, 3, 4):
                rec["json_ok"] = _strict_json(r.stdout)
            if r.exception is not None and not isinstance(r.exception, SystemExit):
                rec["exception"] = f"{type(r.exception).__name__}: {r.exception}"[:500]
                rec["traceback"] = "".join(traceback.format_exception(*r.exc_info))[-4000:]
            if args[0] == "convert":
                rec["out_exists"] = os.path.exists(args[2])
            if r.exit_code == INTERNAL and "traceback" not in rec:  # the CLI hid it: rerun with --debug to see where
                rec["traceback"] = CliRunner().invoke(main, ["--debug", *args], catch_exceptions=True).stderr[-4000:]
            exits.append(r.exit_code)
            os.write(w, (json.dumps(rec) + "\n").encode())
        os.close(w)
        os._exit(0)
    except BaseException:  # noqa: BLE001 - the child must never return into the parent's code
        try:
            os.write(w, (json.dumps({"child_error": traceback.format_exc()[-2000:]}) + "\n").encode())
        finally:
            os._exit(70)


def _fork_run(case: Case, d: Path, paths: dict[str, str], timeout: float) -> tuple[list[dict], dict]:
    r, w = os.pipe()
    nout = os.open(d / "native.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    nerr = os.open(d / "native.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)  # its own group: a hang kills what it started too (the TFLite Micro harness)
        os.close(r)
        _run_in_child(case, paths, w, nout, nerr)
    os.close(w)
    os.close(nout)
    os.close(nerr)
    deadline = time.monotonic() + timeout
    buf = b""
    hung = False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            hung = True
            break
        ready, _, _ = select.select([r], [], [], left)
        if not ready:
            continue
        chunk = os.read(r, 65536)
        if not chunk:
            break
        buf += chunk
    if hung:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    os.close(r)
    _, status = os.waitpid(pid, 0)
    info = {"hung": hung, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) and not hung else None,
            "status": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}
    recs = [json.loads(line) for line in buf.decode(errors="replace").splitlines() if line.strip()]
    info["native_err"] = (d / "native.err").read_text(errors="replace")[-4000:]
    return recs, info


def _subprocess_run(case: Case, paths: dict[str, str], timeout: float) -> tuple[list[dict], dict]:
    recs: list[dict] = []
    exits: list[int | None] = []
    deadline = time.monotonic() + timeout
    info = {"hung": False, "signal": None, "status": 0, "native_err": ""}
    env = dict(os.environ, PYTHONHASHSEED="random")
    for cmd in case.commands:
        if cmd.requires is not None and exits[cmd.requires] != 0:
            exits.append(None)
            recs.append({"skipped": True})
            continue
        args = _fill(cmd.args, paths)
        left = deadline - time.monotonic()
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "xstream", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=REPO, env=env, errors="replace",
                                start_new_session=True)  # a hang kills what it started too
        try:
            out, err = proc.communicate(timeout=max(left, 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            info["hung"] = True
            break
        p = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        rec = {"exit": p.returncode, "stdout": p.stdout[:4000], "stderr": p.stderr[-4000:],
               "seconds": round(time.monotonic() - t0, 3)}
        if "--json" in args and p.returncode in (0, 1, 2, 3, 4):
            rec["json_ok"] = _strict_json(p.stdout)
        if p.returncode < 0:
            info["signal"] = -p.returncode
        if args[0] == "convert":
            rec["out_exists"] = os.path.exists(args[2])
        recs.append(rec)
        exits.append(p.returncode)
    return recs, info


def _different(rec: dict) -> bool:
    """verify said the models differ (its verdict, on stdout, as text or JSON)."""
    out = rec["stdout"]
    return out.startswith("DIFFERENT") or (out.startswith("{") and '"equal": false' in out)


def _stderr_ok(rec: dict, subprocess_mode: bool) -> bool:
    err = rec["stderr"]
    if rec["exit"] == 0:
        return all(line.startswith("xstream: note: ") for line in err.splitlines())
    lines = err.splitlines()
    if subprocess_mode:  # the real stderr also holds what native code logged; judge xstream's own line
        lines = [ln for ln in lines if ln.startswith("xstream:")]
    if rec["exit"] == 1 and not lines and _different(rec):
        return True  # verify's verdict is on stdout
    return len(lines) == 1 and lines[0].startswith("xstream: error: ") and err.endswith("\n")


def run_case(case: Case, workdir: str | os.PathLike, timeout: float = TIMEOUT, mode: str | None = None) -> dict:
    """Run `case` in a fresh folder under `workdir`; returns a JSON-able result with a list of problems."""
    mode = mode or ("subprocess" if case.subprocess else "fork")
    if mode == "fork":
        preload()
    d = Path(tempfile.mkdtemp(prefix=f"case{case.index}-", dir=workdir))
    paths = _paths(d)
    Path(paths["IN"]).write_bytes(case.data)
    if case.original is not None:
        shutil.copyfile(REPO / "models" / f"{case.original}.tflite", paths["ORIG"])
    inputs = [Path(paths["IN"])] + ([Path(paths["ORIG"])] if case.original is not None else [])
    before = {str(p): _sha(p) for p in inputs}
    t0 = time.monotonic()
    if mode == "fork":
        recs, info = _fork_run(case, d, paths, timeout)
    else:
        recs, info = _subprocess_run(case, paths, timeout)
    seconds = time.monotonic() - t0
    problems: list[str] = []
    details: list[str] = []

    def problem(kind: str, detail: str) -> None:
        if kind not in problems:
            problems.append(kind)
        details.append(f"{kind}: {detail}")

    if info["hung"]:
        problem("hang", f"over {timeout:.0f} s (commands finished: {len(recs)})")
    sites: list[str] = []
    if info.get("signal"):
        problem("crash", f"killed by signal {info['signal']} in command {len(recs)}")
        k = len(recs)
        sites.append(f"{case.commands[k].args[0] if k < len(case.commands) else '?'}: signal {info['signal']}")
    for rec in recs:
        if "child_error" in rec:
            problem("crash", "fuzz child failed: " + _tail(rec["child_error"]))
    exits: list[int | None] = []
    for k, (cmd, rec) in enumerate(zip(case.commands, recs)):
        if "child_error" in rec:
            break
        if rec.get("skipped"):
            exits.append(None)
            continue
        name = " ".join(cmd.args[:1])
        code = rec["exit"]
        exits.append(code)
        shown = rec["stderr"] + rec["stdout"]
        if code == INTERNAL or "exception" in rec:
            problem("crash", f"{name}: exit {code}: {rec.get('exception') or rec['stderr'].strip()[:300]}")
            sites.append(f"{name}: " + crash_site(rec.get("traceback") or rec["stderr"]))
        elif code not in cmd.expect:
            problem("exit-code", f"{name}: exit {code} (expected {cmd.expect}): {rec['stderr'].strip()[:300]}")
        if "Traceback" in shown:
            problem("traceback", f"{name}: traceback in output")
        if code != INTERNAL and not _stderr_ok(rec, mode == "subprocess"):
            problem("stderr", f"{name}: exit {code}, stderr {rec['stderr'][:300]!r}")
        if FALLBACK in rec["stderr"]:
            problem("reader-fallback", f"{name}: {rec['stderr'].strip()[:300]}")
        if cmd.args[0] == "convert" and code != 0 and rec.get("out_exists") and cmd.args[2] != "{IN}":
            problem("partial-output", f"{name}: OUT exists after exit {code}")
        if rec.get("json_ok") is False:
            problem("bad-json", f"{name}: stdout is not strict JSON")
        if cmd.args[0] == "verify" and code == 1 and _different(rec) and case.original is None:
            problem("verify-different", f"verify: {rec['stdout'][:300]}")
        if cmd.same_as is not None and code == 0 and exits[cmd.same_as] == 0:
            a, b = _sha(Path(paths["OUT"])), _sha(Path(paths["OUT2"]))
            if a != b:
                problem("nondeterminism", "two converts of the same input differ")
    # inspect refused the model as unreadable, but convert read it
    if len(exits) > 1 and exits[0] == 2 and case.commands[1].args[0] == "convert" and exits[1] in (0, 1):
        problem("exit-code", f"inspect exit 2 but convert exit {exits[1]}")
    native = info.get("native_err", "").strip().splitlines()
    if mode == "subprocess":
        native = [ln for rec in recs for ln in rec.get("stderr", "").splitlines() if not ln.startswith("xstream:")]
    if native:
        problem("native-stderr", native[0][:300])
    for p in inputs:
        if _sha(p) != before[str(p)]:
            problem("input-changed", f"{p.name} changed")
    leftovers = sorted(x.name for x in d.iterdir() if x.name.startswith(".xstream-"))
    if leftovers and not info["hung"]:
        problem("partial-output", f"left behind {leftovers}")
    result = {"index": case.index, "seed": case.seed, "mutation": case.mutation, "mode": mode,
              "seconds": round(seconds, 3), "exits": [[c.args[0], e] for c, e in zip(case.commands, exits)],
              "problems": problems, "details": details, "sites": sites,
              "times": [[c.args[0], r.get("seconds")] for c, r in zip(case.commands, recs) if "exit" in r],
              "commands": [" ".join(c.args) for c in case.commands]}
    if problems:
        result["records"] = recs
        result["native_err"] = info.get("native_err", "")
    shutil.rmtree(d, ignore_errors=True)
    return result
