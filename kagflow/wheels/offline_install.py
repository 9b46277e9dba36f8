"""Install a kagflow wheels dataset inside a Kaggle kernel that runs with internet off.

Standard library only and no kagflow imports: the notebooks inline this file into the kernel's
first cell. Usage in a kernel::

    install_from_wheels_dataset("/kaggle/input", required=("peft", "bitsandbytes"))

It finds every mounted folder holding ``kagflow-wheels-manifest.json`` (classic
``/kaggle/input/<slug>/`` and newer ``/kaggle/input/datasets/<owner>/<slug>/`` layouts alike),
installs the manifest's wheels with ``pip install --no-index --find-links DIR`` (``--no-deps``
when the manifest says the set is complete, as ``kagflow wheels build`` verified), then checks
that every package is installed at its version and that the requested ones import: in the kernel
itself (which imports them next anyway), in a fresh interpreter when one was imported before the
install or the target is another interpreter. Anything absent raises :class:`WheelsInstallError`
naming the package and the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

MANIFEST_NAME = "kagflow-wheels-manifest.json"
SEARCH_DEPTH = 5          # /kaggle/input/datasets/<owner>/<slug>/<folder>/manifest
REBUILD_HINT = ("rebuild the dataset for this image: `kagflow image probe`, then `kagflow wheels build` "
                "and `kagflow wheels push`, and keep it in the kernel's dataset_sources")


class WheelsInstallError(RuntimeError):
    """A wheels dataset is missing, broken, or did not provide a package the kernel needs."""


def find_wheels_datasets(input_root: str = "/kaggle/input") -> list[str]:
    """Folders under ``input_root`` (at most SEARCH_DEPTH levels down) holding a wheels manifest.

    A dataset mounted at both layouts (``<slug>/`` and ``datasets/<owner>/<slug>/``) counts once:
    the first folder of each dataset id (or real path) is kept."""
    found, seen = [], set()
    root = os.path.abspath(input_root)
    if not os.path.isdir(root):
        return found
    base_depth = root.rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if MANIFEST_NAME in filenames:
            try:
                key = _read_manifest(dirpath).get("dataset") or os.path.realpath(dirpath)
            except WheelsInstallError:
                key = os.path.realpath(dirpath)
            if key not in seen and os.path.realpath(dirpath) not in seen:
                seen.update((key, os.path.realpath(dirpath)))
                found.append(dirpath)
        if dirpath.count(os.sep) - base_depth >= SEARCH_DEPTH:
            dirnames[:] = []
        else:
            # the newer layout first: its path names the owner
            dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=lambda d: (d != "datasets", d))
    return found


def install_from_wheels_dataset(input_root: str = "/kaggle/input", *, required: "tuple[str, ...] | list[str]" = (),
                                python: "str | None" = None, quiet: bool = True) -> list[str]:
    """Install every mounted kagflow wheels dataset; return the ``name==version`` pins installed.

    ``required``: distribution names that must import afterwards (from the image or a dataset).
    ``python``: the interpreter to install into (default: this one).
    """
    python = python or sys.executable
    folders = find_wheels_datasets(input_root)
    if not folders:
        problems = _check(python, [{"name": n, "version": None, "imports": [], "import_own_name": True}
                                   for n in required])
        if problems:
            raise WheelsInstallError(
                f"no kagflow wheels dataset under {input_root}, and the image lacks: "
                + "; ".join(problems)
                + f". Fix: add the wheels dataset to the kernel's dataset_sources, or {REBUILD_HINT}.")
        print(f"kagflow: no wheels dataset under {input_root}; using the image's packages")
        return []
    installed: list[str] = []
    expected: list[dict] = []
    wanted = {_canon(r) for r in required}
    for folder in folders:
        manifest = _read_manifest(folder)
        packages = manifest.get("packages") or []
        if not packages:
            print(f"kagflow: {folder}: nothing to install (the image has everything)")
            continue
        wheels = []
        for p in packages:
            path = os.path.join(folder, p["filename"])
            if not os.path.isfile(path):
                raise WheelsInstallError(f"{p['name']}: {p['filename']} is missing from {folder}. Fix: {REBUILD_HINT}.")
            wheels.append(path)
        cmd = [sys.executable, "-m", "pip"]
        if os.path.realpath(python) != os.path.realpath(sys.executable):
            cmd += ["--python", python]
        cmd += ["install", "--no-index", "--find-links", folder, "--disable-pip-version-check",
                "--no-warn-script-location"]
        if quiet:
            cmd.append("-q")
        if manifest.get("complete"):
            cmd.append("--no-deps")
        cmd += wheels
        print(">>> " + " ".join(cmd[:8]) + f" ... ({len(wheels)} wheels from {folder})")
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
            raise WheelsInstallError(f"pip could not install the wheels from {folder}:\n{tail}\nFix: {REBUILD_HINT}.")
        for p in packages:
            installed.append(f"{p['name']}=={p['version']}")
            check_imports = bool(p.get("requested")) or _canon(p["name"]) in wanted
            expected.append({"name": p["name"], "version": p["version"],
                             "imports": list(p.get("import_names") or []) if check_imports else [],
                             "import_own_name": check_imports})
    names = {_canon(e["name"]) for e in expected}
    expected += [{"name": n, "version": None, "imports": [], "import_own_name": True}
                 for n in required if _canon(n) not in names]
    problems = _check(python, expected)
    if problems:
        raise WheelsInstallError("kagflow wheels: after installing, " + "; ".join(problems) + f". Fix: {REBUILD_HINT}.")
    if installed:
        print(f"kagflow: installed {len(installed)} wheels: {', '.join(installed)}")
    return installed


def _canon(name: str) -> str:
    out = []
    for ch in name.lower():
        out.append("-" if ch in "._-" else ch)
    text = "".join(out)
    while "--" in text:
        text = text.replace("--", "-")
    return text


def _read_manifest(folder: str) -> dict:
    path = os.path.join(folder, MANIFEST_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise WheelsInstallError(f"cannot read {path}: {exc}. Fix: {REBUILD_HINT}.") from exc


_CHECK = r"""
import importlib, json, sys
from importlib import metadata
def problems(expected, imported_before=None):
    importlib.invalidate_caches()
    out = []
    for e in expected:
        name = e["name"]
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            out.append("%s is not installed" % name)
            continue
        if e.get("version") and have != e["version"]:
            out.append("%s is %s, expected %s" % (name, have, e["version"]))
        mods = list(e.get("imports") or [])
        if e.get("import_own_name") and not mods:
            dist = metadata.distribution(name)
            top = (dist.read_text("top_level.txt") or "").split()
            if not top:
                top = sorted({str(f).split("/")[0] for f in (dist.files or [])
                              if str(f).endswith("/__init__.py") and str(f).count("/") == 1})
            mods = top or [name.replace("-", "_").replace(".", "_")]
        for mod in mods:
            if imported_before is not None and mod.split(".")[0] in imported_before:
                return None  # imported before the install: only a fresh process can tell what it would get
            try:
                importlib.import_module(mod)
            except Exception as exc:
                out.append("%s: import %s failed (%s: %s)" % (name, mod, type(exc).__name__, exc))
    return out
if __name__ == "__main__":
    print(json.dumps(problems(json.loads(sys.argv[1]))))
"""


def _check(python: str, expected: list) -> list:
    """The version/import check: what is installed at which version, and that the packages import.

    In this process when ``python`` is this interpreter and none of the modules was imported before the
    install: the kernel imports these packages next anyway, so the check costs nothing extra (a fresh
    process would import torch, transformers and peft a second time, ~12 s a kernel start on a CPU box)
    and it checks what this kernel will import (its sys.path, with no new .pth files read). Otherwise in
    a fresh ``python`` process, which sees the fresh install."""
    if not expected:
        return []
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        space = {"__name__": "kagflow_wheels_check"}
        exec(compile(_CHECK, "<kagflow wheels check>", "exec"), space)
        found = space["problems"](expected, imported_before={m.split(".")[0] for m in sys.modules})
        if found is not None:
            return found
    proc = subprocess.run([python, "-c", _CHECK, json.dumps(expected)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        return [f"the check could not run in {python}: {proc.stderr.strip()[-500:]}"]
    try:
        lines = proc.stdout.strip().splitlines()
        return list(json.loads(lines[-1])) if lines else []
    except ValueError:
        return [f"the check printed no result: {proc.stdout[-500:]}"]
