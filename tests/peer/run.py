#!/usr/bin/env python3
"""Run Kaggle's own public test suites against kagflow's local Kaggle and report where it stands.

    python tests/peer/run.py --kaggle-cli PATH --kagglehub PATH      (or make peer)

PATH is a clone of github.com/Kaggle/kaggle-cli / Kaggle/kagglehub (a work tree or a bare git
directory; also ``$KAGGLE_CLI_REPO`` / ``$KAGGLEHUB_REPO``). Their commit ``--kaggle-cli-ref`` /
``--kagglehub-ref`` (default: the pinned ``PINNED``) is copied into a scratch folder: the suites are never
changed.

One run: a fresh ``kagflow local serve`` on 127.0.0.1 and a free port; the official clients (the
versions kagflow pins, in their own environment under ``tests/peer/.work/venv``) pointed at it with
``KAGGLE_API_ENVIRONMENT=LOCALHOST`` and the one-entry endpoint shim (``shim/sitecustomize.py``);
the public resources the suites assume seeded (``seed_data.py``); then the four suites:

* kaggle-cli ``tests/test_commands.sh`` (each ``kaggle`` command is one test: it passes when it exits 0)
* kaggle-cli ``tests/backend/backend_tests.py``
* kaggle-cli ``tests/integration/``
* kagglehub ``integration_tests/`` (``hatch test integration_tests`` on Kaggle's CI: pytest)

It prints pass/fail per suite and a table of failures, and writes ``results.json`` and ``RESULTS.md``
(``--out``, default this folder): counts, commits, and for each failure the request that failed, the
local server's answer and the diagnosis from ``diagnoses.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import report  # noqa: E402
import seed_data  # noqa: E402

CLIENTS = ("kaggle", "kagglesdk", "kagglehub", "six", "pytest")  # pinned by requirements/constraints.txt
SUITE_TIMEOUT_S = 1800
REPOS = {"kaggle-cli": ("KAGGLE_CLI_REPO", "https://github.com/Kaggle/kaggle-cli"),
         "kagglehub": ("KAGGLEHUB_REPO", "https://github.com/Kaggle/kagglehub")}
# The commits RESULTS.md was measured on (kaggle-cli 2026-07-02, kagglehub 2026-05-06); --*-ref HEAD moves on.
PINNED = {"kaggle-cli": "a430f0bddc6ad4002cd0cdc821d80000da85a1d1",
          "kagglehub": "5584faf56dbc4e4e0e97a1c1a3abbffa02bcedca"}


@dataclass(frozen=True)
class Suite:
    name: str
    repo: str
    cwd: str          # inside the repository copy
    target: str       # the script (bash) or the pytest target
    user: str         # the account the suite runs as
    baseline: tuple   # (passed, total) the issue measured


SUITES = (
    Suite("test_commands.sh", "kaggle-cli", ".", "tests/test_commands.sh", seed_data.DEVELOPER, (56, 74)),
    Suite("backend_tests.py", "kaggle-cli", "tests/backend", "backend_tests.py", seed_data.DEVELOPER, (36, 54)),
    Suite("integration/test_models.py", "kaggle-cli", ".", "tests/integration", seed_data.DEVELOPER, (1, 2)),
    Suite("kagglehub integration_tests", "kagglehub", ".", "integration_tests", seed_data.HUB_USER, (34, 61)),
)


class RunError(Exception):
    pass


# ---------------------------------------------------------------------------------------------- repositories

def locate(repo: str, given: str | None, ref: str) -> tuple[Path, str]:
    """The clone of ``repo`` and the commit ``ref`` names in it."""
    env_var, url = REPOS[repo]
    path = given or os.environ.get(env_var)
    if not path:
        raise RunError(f"no {repo} clone given: git clone {url} DIR, then pass --{repo} DIR (make peer: "
                       f"{env_var}=DIR)")
    if subprocess.run(["git", "-C", path, "rev-parse", "--git-dir"], capture_output=True).returncode != 0:
        raise RunError(f"{path} is not a git clone: git clone {url} DIR, then pass --{repo} DIR")
    done = subprocess.run(["git", "-C", path, "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RunError(f"{path} has no commit {ref!r} (a shallow or old clone?): git -C {path} fetch --unshallow, "
                       f"or pass --{repo}-ref HEAD")
    return Path(path), done.stdout.strip()


def extract(path: Path, commit: str, dest: Path) -> None:
    """The tree of ``commit`` into ``dest`` (a clean copy: the suites write files next to themselves)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(path), "archive", "--format=tar", commit], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


# ---------------------------------------------------------------------------------------------- environments

def client_env(venv: Path) -> dict:
    """The official clients in their own virtualenv (never kagflow's): the versions kagflow pins."""
    python = venv / "bin" / "python"
    constraints = ROOT / "requirements" / "constraints.txt"
    stamp = venv / ".peer-stamp"
    want = " ".join(CLIENTS) + " " + constraints.read_text()
    if not (python.exists() and stamp.exists() and stamp.read_text() == want):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(constraints), *CLIENTS],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RunError(f"pip could not install the official clients: {done.stderr[-1500:]}")
        stamp.write_text(want)
    # kagglehub's test_package_with_dependencies installs pyjokes itself and asserts it is absent first
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "pyjokes"], capture_output=True)
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            check=True)
    versions = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    return {name: versions.get(name, "?") for name in CLIENTS}


def base_env(work: Path, venv: Path, url: str) -> dict:
    """What every client process gets: no inherited Kaggle settings, its own HOME, the shim, the recorder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAGGLE", "KAGFLOW", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(work / "home"), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
               KAGGLE_API_ENVIRONMENT="LOCALHOST", KAGFLOW_PEER_ENDPOINT=url,
               KAGFLOW_PEER_REQUESTS=str(work / "requests.jsonl"), PYTHONPATH=str(HERE / "shim"),
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", PYTHONDONTWRITEBYTECODE="1")
    (work / "home").mkdir(parents=True, exist_ok=True)
    return env


def user_env(env: dict, work: Path, user: str) -> dict:
    """Credentials for ``user``: a kaggle.json in its own KAGGLE_CONFIG_DIR (kaggle-cli's tools/use-localhost.sh)
    and KAGGLE_USERNAME/KAGGLE_KEY (kagglehub's integration_tests/README.md)."""
    config = work / "config" / user
    config.mkdir(parents=True, exist_ok=True)
    (config / "kaggle.json").write_text(json.dumps({"username": user, "key": seed_data.KEY}))
    (config / "kaggle.json").chmod(0o600)
    return dict(env, KAGGLE_CONFIG_DIR=str(config), KAGGLE_USERNAME=user, KAGGLE_KEY=seed_data.KEY,
                KAGGLE_DEVELOPER=seed_data.DEVELOPER)


# ---------------------------------------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kagflow: str, data: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    data.mkdir(parents=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen([kagflow, "local", "serve", "--port", str(port), "--data-dir", str(data)],
                                cwd=str(data), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RunError(f"kagflow local serve exited ({proc.returncode}): {log.read_text()[-1500:]}")
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"{url}/health", timeout=2) as resp:
                if json.loads(resp.read()).get("service") == "kagflow-local":
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RunError(f"kagflow local serve did not answer at {url} within 60 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------------------------------------- seeding

def seed(work: Path, env: dict, venv: Path, kagflow_python: str, data: Path) -> list:
    results_c, results_r = work / "seed-competitions.json", work / "seed-resources.json"
    subprocess.run([kagflow_python, str(HERE / "seed_competitions.py"), str(data), str(results_c)], check=True,
                   env=dict(os.environ, PYTHONPATH=str(HERE)), cwd=str(work))
    seed_env = dict(env, PYTHONPATH=f"{HERE / 'shim'}{os.pathsep}{HERE}")
    seed_env.pop("KAGGLE_CONFIG_DIR", None)
    subprocess.run([str(venv / "bin" / "python"), str(HERE / "seed.py"), str(work / "seed"), str(results_r)],
                   check=True, env=seed_env, cwd=str(work))
    return json.loads(results_c.read_text()) + json.loads(results_r.read_text())


# ---------------------------------------------------------------------------------------------- suites

# test_commands.sh was written for the layout before kaggle-cli a2c4688 (#1071), which moved tests/dataset/ and
# tests/kernel/ to tests/backend/ and left the script's `d init -p tests/dataset`, `k init -p tests/kernel`, ...
# pointing at folders that no longer exist. The runner copies them back, so those commands reach the server.
MOVED_FOLDERS = {"tests/dataset": "tests/backend/dataset", "tests/kernel": "tests/backend/kernel"}


def restore_moved_folders(src: Path) -> list:
    restored = []
    for old, new in MOVED_FOLDERS.items():
        if not (src / old).exists() and (src / new).is_dir():
            shutil.copytree(src / new, src / old)
            restored.append(f"copied {new}/ to {old}/ (moved by kaggle-cli a2c4688; test_commands.sh still uses {old})")
    return restored


def run_commands_script(suite: Suite, src: Path, env: dict, venv: Path, work: Path) -> list:
    """test_commands.sh with a recording ``kaggle`` (``kaggle_step.py``) first on PATH."""
    wrapper_dir, steps = work / "bin", work / "results" / "test_commands.steps.jsonl"
    wrapper_dir.mkdir(parents=True, exist_ok=True)
    steps.parent.mkdir(parents=True, exist_ok=True)
    steps.unlink(missing_ok=True)
    wrapper = wrapper_dir / "kaggle"
    wrapper.write_text(f'#!/bin/sh\nexec "{venv / "bin" / "python"}" "{HERE / "kaggle_step.py"}" "$@"\n')
    wrapper.chmod(0o755)
    env = dict(env, PATH=f"{wrapper_dir}{os.pathsep}{env['PATH']}", KAGFLOW_PEER_STEPS=str(steps),
               KAGFLOW_PEER_KAGGLE=str(venv / "bin" / "kaggle"))
    script = src / suite.target
    with open(work / "results" / "test_commands.log", "w") as log:
        try:
            subprocess.run(["bash", str(script)], cwd=str(src / suite.cwd), env=env, stdin=subprocess.DEVNULL,
                           stdout=log, stderr=subprocess.STDOUT, timeout=SUITE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.write(f"\n(test_commands.sh killed after {SUITE_TIMEOUT_S} s)\n")
    done = [json.loads(line) for line in steps.read_text().splitlines()] if steps.exists() else []
    commands = [line for line in script.read_text().splitlines() if re.match(r"^kaggle\s", line)]
    tests = []
    for n, line in enumerate(commands, start=1):
        step = done[n - 1] if n <= len(done) else None
        passed = step is not None and step["rc"] == 0
        tests.append({"test": line.strip(), "tag": f"test_commands.sh#{n}", "outcome": "passed" if passed else "failed",
                      "message": "" if passed else "not reached" if step is None else
                      f"exit {step['rc']}\n{step['output']}"})
    return tests


def _result_path(suite: Suite, work: Path) -> Path:
    return work / "results" / f"{re.sub(r'[^A-Za-z0-9]+', '_', suite.name)}.json"


def run_pytest(suite: Suite, src: Path, env: dict, venv: Path, work: Path) -> list:
    """pytest on the suite, with the repository's own pytest settings (meant for its unit tests, e.g. kaggle-cli's
    ``pythonpath = src``, which would import the checkout instead of the installed client) left out."""
    result = _result_path(suite, work)
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    ini = work / "pytest.ini"
    ini.write_text("[pytest]\n")
    cwd = src / suite.cwd
    with open(result.with_suffix(".log"), "w") as log:
        try:
            subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-c", str(ini), "--rootdir", str(cwd),
                            "-p", "pytest_record", "-p", "no:cacheprovider", "-rA", suite.target],
                           cwd=str(cwd), env=dict(env, KAGFLOW_PEER_RESULT=str(result)), stdout=log,
                           stderr=subprocess.STDOUT, timeout=SUITE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.write(f"\n(pytest killed after {SUITE_TIMEOUT_S} s)\n")
    if not result.exists():
        raise RunError(f"{suite.name}: pytest wrote no result; see {result.with_suffix('.log')}")
    tests = json.loads(result.read_text())
    for t in tests:
        t["tag"] = t["test"]
        t["test"] = t["test"].split("::", 1)[-1]
    return tests


def pytest_tally(suite: Suite, work: Path) -> str:
    """pytest's own last line, e.g. "12 failed, 42 passed, 7 errors" (it counts teardown errors and subtests)."""
    log = _result_path(suite, work).with_suffix(".log")
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    found = re.search(r"=+ (.*?) in [0-9.]+s", lines[-1]) if lines else None
    return found.group(1) if found else ""


# ---------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kaggle-cli", help="clone of github.com/Kaggle/kaggle-cli ($KAGGLE_CLI_REPO)")
    parser.add_argument("--kagglehub", help="clone of github.com/Kaggle/kagglehub ($KAGGLEHUB_REPO)")
    parser.add_argument("--kaggle-cli-ref", default=PINNED["kaggle-cli"], help="default: the pinned commit")
    parser.add_argument("--kagglehub-ref", default=PINNED["kagglehub"], help="default: the pinned commit")
    parser.add_argument("--suite", action="append", choices=[s.name for s in SUITES],
                        help="run only this suite (repeatable; default: all four)")
    parser.add_argument("--kagflow", default=str(ROOT / ".venv" / "bin" / "kagflow"),
                        help="the kagflow command that serves the local Kaggle (default: this checkout's .venv)")
    parser.add_argument("--work", default=str(HERE / ".work"), help="scratch folder (default: tests/peer/.work)")
    parser.add_argument("--out", default=str(HERE), help="where results.json and RESULTS.md go")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    started = time.monotonic()
    suites = [s for s in SUITES if not args.suite or s.name in args.suite]
    repos = {"kaggle-cli": locate("kaggle-cli", args.kaggle_cli, args.kaggle_cli_ref),
             "kagglehub": locate("kagglehub", args.kagglehub, args.kagglehub_ref)}
    work_root = Path(args.work).resolve()
    work = work_root / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name, (path, commit) in repos.items():
        extract(path, commit, work / "src" / name)
    venv = work_root / "venv"
    print("the official clients' environment ...", flush=True)
    versions = client_env(venv)
    kagflow_python = str(Path(args.kagflow).parent / "python")
    proc, url = start_server(args.kagflow, work / "server", work / "server.log")
    results = []
    try:
        env = base_env(work, venv, url)
        print(f"local Kaggle at {url}; seeding ...", flush=True)
        t0 = time.monotonic()
        seeds = seed(work, env, venv, kagflow_python, work / "server")
        seed_s = time.monotonic() - t0
        adjustments = restore_moved_folders(work / "src" / "kaggle-cli") if SUITES[0] in suites else []
        for suite in suites:
            print(f"running {suite.name} ...", flush=True)
            t0 = time.monotonic()
            src = work / "src" / suite.repo
            runner = run_commands_script if suite.target.endswith(".sh") else run_pytest
            tests = runner(suite, src, user_env(env, work, suite.user), venv, work)
            results.append({"suite": suite.name, "repo": suite.repo, "user": suite.user,
                            "baseline": list(suite.baseline), "seconds": round(time.monotonic() - t0),
                            "tally": "" if runner is run_commands_script else pytest_tally(suite, work),
                            "tests": tests})
    finally:
        stop_server(proc)
    requests = report.load_requests(work / "requests.jsonl")
    for suite in results:
        for test in suite["tests"]:
            if test["outcome"] == "failed":
                test.update(report.exchanges_of(requests.get(test["tag"], [])))
    kagflow_commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                    text=True).stdout.strip()
    if subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "kagflow"], capture_output=True,
                      text=True).stdout.strip():
        kagflow_commit += " with uncommitted changes in kagflow/"
    document = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kagflow_commit": kagflow_commit,
                "repos": {name: {"commit": commit} for name, (_, commit) in repos.items()}, "clients": versions,
                "seconds": {"seed": round(seed_s), "total": round(time.monotonic() - started)},
                "adjustments": adjustments, "seeds": seeds, "suites": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report.write(document, out / "results.json", out / "RESULTS.md")
    print(report.summary(document))
    print(f"wrote {out / 'results.json'} and {out / 'RESULTS.md'}; scratch (logs, requests) in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
