"""``python -m kagflow.local serve --port P --data-dir D``: the background server's entry point."""

from __future__ import annotations

import argparse
import sys

from kagflow.local.control import default_data_dir, serve_forever


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kagflow.local")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the local Kaggle in the foreground")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--data-dir", default=None, help="default: $KAGFLOW_LOCAL_DATA_DIR or ~/.kagflow/local")
    args = parser.parse_args(argv)
    serve_forever(args.data_dir or default_data_dir(), args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
