"""Runs one notebook with nbclient in this process; started by :mod:`kagflow.local.run.runner`.

``python executor.py NOTEBOOK WORKING LOG RESULT [EXECUTED]`` executes NOTEBOOK on a ``python3``
Jupyter kernel whose cwd is WORKING, streams every output into LOG as it arrives, writes
``{"status": "COMPLETE"|"ERROR", "failure": ...}`` to RESULT and the executed notebook to EXECUTED
(default: ``executed.ipynb`` next to LOG).

The log is Kaggle's format, kept valid JSON after every entry: a list of
``{"stream_name": "stdout"|"stderr", "time": <seconds since start>, "data": <text>}``;
errors are written to stderr as their plain-text traceback.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class KaggleLog:
    """Append-only JSON list on disk, valid after every append."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.results = True  # log execute_result/display_data (not for scripts)
        self.t0 = time.monotonic()
        self._lock = threading.Lock()
        try:  # the runner's first lines (the run's limits) are kept
            kept = json.loads(self.path.read_text())
        except (OSError, ValueError):
            kept = []
        self._f = open(self.path, "wb")
        self._f.write(("[" + "\n,".join(json.dumps(e) for e in kept) + "]").encode("ascii")
                      if isinstance(kept, list) else b"[]")
        self._f.flush()
        self._empty = not (isinstance(kept, list) and kept)

    def add(self, stream_name: str, data: str) -> None:
        if not data:
            return
        entry = json.dumps({"stream_name": stream_name, "time": round(time.monotonic() - self.t0, 3), "data": data})
        with self._lock:
            self._f.seek(-1, os.SEEK_END)
            self._f.write((("" if self._empty else "\n,") + entry + "]").encode("ascii"))
            self._f.flush()
            self._empty = False

    def add_output(self, out: dict) -> None:
        kind = out.get("output_type")
        if kind == "stream":
            self.add(out.get("name", "stdout"), _text(out.get("text")))
        elif kind == "error":
            trace = "\n".join(out.get("traceback") or []) or f"{out.get('ename')}: {out.get('evalue')}"
            self.add("stderr", _ANSI.sub("", trace) + "\n")
        elif kind in ("execute_result", "display_data") and self.results:
            text = (out.get("data") or {}).get("text/plain")
            if text:
                self.add("stdout", _text(text) + "\n")

    def close(self) -> None:
        self._f.close()


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else (value or "")


def execute(notebook: Path, working: Path, log_path: Path, executed: Path | None = None) -> tuple[str, str]:
    """Execute ``notebook`` in ``working``; return ``(status, failure_message)``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    log = KaggleLog(log_path)

    class LoggingClient(NotebookClient):
        def output(self, outs, msg, display_id, cell_index):
            out = super().output(outs, msg, display_id, cell_index)
            if out is not None:
                log.add_output(out)
            return out

    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception as exc:  # unreadable notebook: an ERROR run, as on Kaggle
        log.add("stderr", f"Could not read the notebook: {type(exc).__name__}: {exc}\n")
        log.close()
        return "ERROR", f"{type(exc).__name__}: {exc}"
    log.results = not nb.metadata.get("kagflow", {}).get("script", False)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    client = LoggingClient(nb, timeout=None, kernel_name="python3", allow_errors=False,
                           resources={"metadata": {"path": str(working)}})
    try:
        client.execute()
        status, failure = "COMPLETE", ""
    except CellExecutionError as exc:
        status, failure = "ERROR", f"{exc.ename}: {exc.evalue}"
    except DeadKernelError as exc:
        status, failure = "ERROR", f"DeadKernelError: {exc}"
        log.add("stderr", f"DeadKernelError: {exc}\n")
    except Exception as exc:
        status, failure = "ERROR", f"{type(exc).__name__}: {exc}"
        log.add("stderr", f"{type(exc).__name__}: {exc}\n")
    finally:
        log.close()
    try:
        nbformat.write(nb, str(executed or Path(log_path).with_name("executed.ipynb")))
    except Exception:
        pass
    return status, failure


def main(argv: list[str]) -> int:
    notebook, working, log_path, result_path = (Path(a) for a in argv[1:5])
    executed = Path(argv[5]) if len(argv) > 5 else None
    # SIGTERM (cancel / time limit) unwinds through nbclient, which shuts the kernel down.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        status, failure = execute(notebook, working, log_path, executed)
    except KeyboardInterrupt:
        status, failure = "CANCELLED", "interrupted"
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"status": status, "failure": failure}))
    os.replace(tmp, result_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
