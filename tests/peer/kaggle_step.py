"""One ``kaggle`` command of kaggle-cli's ``tests/test_commands.sh``, recorded.

The runner puts a ``kaggle`` wrapper first on PATH that runs this file: it runs the real, unchanged
CLI (``KAGFLOW_PEER_KAGGLE``) with the same arguments and environment, answers a prompt "no" (as
the script's header asks; each command gets its own answer, so one that reads ahead cannot take the
next one's), prints its output, and appends one JSON line to ``KAGFLOW_PEER_STEPS``: the step number
(the n-th ``kaggle`` command of the script), the arguments, the exit status and the output's tail.
A step passes when it exits 0.
"""

import json
import os
import subprocess
import sys

STEP_TIMEOUT_S = 300
TAIL_CHARS = 3000


def main() -> int:
    steps = os.environ["KAGFLOW_PEER_STEPS"]
    try:
        with open(steps, encoding="utf-8") as f:
            number = sum(1 for _ in f) + 1
    except FileNotFoundError:
        number = 1
    args = sys.argv[1:]
    env = dict(os.environ, KAGFLOW_PEER_TEST=f"test_commands.sh#{number}")
    try:
        done = subprocess.run([os.environ["KAGFLOW_PEER_KAGGLE"], *args], env=env, input="no\n", capture_output=True,
                              text=True, errors="replace", timeout=STEP_TIMEOUT_S)
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = 124, _str(exc.stdout), _str(exc.stderr) + f"\n(killed after {STEP_TIMEOUT_S} s)"
    sys.stdout.write(out)
    sys.stderr.write(err)
    with open(steps, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": number, "args": args, "rc": rc,
                            "output": (out + ("\n" if out and err else "") + err)[-TAIL_CHARS:]}) + "\n")
    return rc


def _str(data) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")


if __name__ == "__main__":
    sys.exit(main())
