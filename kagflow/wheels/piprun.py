"""Running pip (``sys.executable -m pip``) and reading its failures.

The only module that starts pip. Index options travel as one :class:`IndexOptions`, and pip's
error text is parsed here, in one place, into the names kagflow reacts to.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from kagflow.errors import WheelsError

PIP_TIMEOUT = 1800  # seconds for one pip command (big wheels on a slow line)


@dataclass(frozen=True)
class IndexOptions:
    """Where pip looks: PyPI by default, or a local index / wheelhouse (tests, air-gapped use)."""

    index_url: Optional[str] = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def args(self, *extra_find_links: "str | os.PathLike[str]") -> list[str]:
        out: list[str] = []
        if self.no_index:
            out.append("--no-index")
        elif self.index_url:
            out += ["--index-url", self.index_url]
        for link in (*self.find_links, *extra_find_links):
            out += ["--find-links", str(link)]
        return out

    @classmethod
    def make(cls, index_url: Optional[str] = None, find_links: Sequence["str | os.PathLike[str]"] = (),
             no_index: bool = False) -> "IndexOptions":
        links = tuple(str(Path(f).resolve()) if "://" not in str(f) else str(f) for f in find_links)
        return cls(index_url=index_url, find_links=links, no_index=bool(no_index))


@dataclass
class PipResult:
    args: list[str]
    returncode: int
    output: str                      # stdout + stderr, in order
    command: str = field(default="")

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def reason(self, max_lines: int = 25) -> str:
        """pip's own explanation: its ERROR lines and the conflict block, else the output's tail."""
        lines = [ln.rstrip() for ln in self.output.splitlines() if ln.strip()]
        keep = [ln for ln in lines if ln.startswith("ERROR") or ln.startswith("    ")
                or ln.startswith("The conflict") or ln.startswith("Additionally")]
        chosen = keep or lines
        return "\n".join(chosen[-max_lines:])


def run_pip(args: Sequence[str], *, cwd: "str | os.PathLike[str] | None" = None,
            isolated: bool = False) -> PipResult:
    """``python -m pip ARGS`` with this interpreter; never raises on pip's failure (caller decides).

    ``isolated``: no pip configuration at all (no pip.conf, user, global or site, and no ``PIP_*``
    variables): what only ``ARGS`` name can be used, e.g. for the offline check.
    """
    cmd = [sys.executable, "-m", "pip", *map(str, args)]
    env = dict(os.environ)
    if isolated:
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env["PIP_NO_INPUT"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise WheelsError(f"pip did not finish within {PIP_TIMEOUT} s", context=" ".join(cmd),
                          hint="check the network or the index URL, then retry") from exc
    return PipResult(list(cmd), proc.returncode, proc.stdout or "", " ".join(cmd))


# --------------------------------------------------------------------------- reading pip's errors

_CONSTRAINT_RE = re.compile(r"The user requested \(constraint\) ([A-Za-z0-9][A-Za-z0-9._-]*)")
_NO_MATCH_RE = re.compile(r"No matching distribution found for (.+?)\s*$", re.MULTILINE)
_NO_VERSION_RE = re.compile(r"Could not find a version that satisfies the requirement (.+?) \(from versions: (.*?)\)")


def constraint_conflicts(output: str) -> set[str]:
    """Names whose image pin (a constraint) took part in a ResolutionImpossible."""
    return {m.group(1) for m in _CONSTRAINT_RE.finditer(output)}


def no_matching_distribution(output: str) -> Optional[str]:
    """The requirement string pip found no distribution for (``gamma``, ``onlywin>=1``), or None."""
    found = _NO_MATCH_RE.findall(output)
    if found:
        return found[-1].strip()
    found = _NO_VERSION_RE.findall(output)
    return found[-1][0].strip() if found else None


def versions_seen(output: str) -> Optional[str]:
    """pip's "(from versions: ...)" list for the failing requirement."""
    found = _NO_VERSION_RE.findall(output)
    return found[-1][1] if found else None
