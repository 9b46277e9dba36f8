"""``python -m kagflow.local serve --port P --data-dir D``: the background server's entry point."""

from __future__ import annotations

import argparse
import os
import sys

from kagflow.local.control import default_data_dir, load_users, serve_forever, users_from_env
from kagflow.local.env import CONSISTENCY_ENV, IDLE_ENV, USERS_ENV


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kagflow.local")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the local Kaggle in the foreground")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--data-dir", default=None, help="default: $KAGFLOW_LOCAL_DATA_DIR or ~/.kagflow/local")
    serve.add_argument("--users", default=None, help=f"JSON file of username: key to check (default: ${USERS_ENV})")
    serve.add_argument("--consistency", default=None, choices=("instant", "eventual"),
                       help=f"eventual: Kaggle's delays after a create (default: ${CONSISTENCY_ENV}, else instant)")
    serve.add_argument("--idle-s", default=None,
                       help=f"stop once idle (no request, no kernel queued or running) this many seconds (default 0: "
                            f"never; the background start passes ${IDLE_ENV})")
    args = parser.parse_args(argv)
    users = load_users(args.users) if args.users else users_from_env()
    serve_forever(args.data_dir or default_data_dir(), args.port, users=users,
                  users_file=args.users or os.environ.get(USERS_ENV), consistency=args.consistency,
                  idle_s=args.idle_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
