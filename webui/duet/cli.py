"""`duet` on the command line: a thin layer over functions that live with their area.

Each subcommand is registered by a small `add_*` function that imports its area lazily, so
`duet --help` stays fast and a missing optional piece breaks only its own command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], int]


def add_serve(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("serve", help="run the web UI (engines must already be up)")
    parser.add_argument("--host", help="bind address (default: DUET_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: DUET_PORT or 8080)")

    def run(args: argparse.Namespace) -> int:
        from duet.server import serve

        return serve(host=args.host, port=args.port)

    parser.set_defaults(handler=run)


def add_dev(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "dev", help="start both CPU engines with the tiny model (installing once), then the UI"
    )
    parser.add_argument("--no-ui", action="store_true", help="start the engines only")
    parser.add_argument("--port", type=int, default=8080, help="web UI port")

    def run(args: argparse.Namespace) -> int:
        from duet.devstack import run_dev

        return run_dev(ui=not args.no_ui, ui_port=args.port)

    parser.set_defaults(handler=run)


def add_modelfile(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("modelfile", help="write a Qwen3 Ollama Modelfile")
    parser.add_argument("source", help="FROM: an Ollama tag, hf.co/... GGUF, or a local path")
    parser.add_argument("-o", "--output", help="file to write (default: standard output)")
    parser.add_argument("--context", type=int, default=32768, help="num_ctx (default 32768)")

    def run(args: argparse.Namespace) -> int:
        from duet.modelfile import ModelfileSpec, render_modelfile

        text = render_modelfile(ModelfileSpec(source=args.source, context_length=args.context))
        if args.output:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
        else:
            sys.stdout.write(text)
        return 0

    parser.set_defaults(handler=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="duet", description="Qwen3 on vLLM and Ollama, side by side, with honest numbers."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (add_serve, add_dev, add_modelfile):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
