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
    parser.add_argument(
        "--install-only", action="store_true", help="install engines and model, start nothing"
    )
    parser.add_argument("--port", type=int, default=8080, help="web UI port")

    def run(args: argparse.Namespace) -> int:
        from duet.devstack import run_dev

        return run_dev(ui=not args.no_ui, ui_port=args.port, install_only=args.install_only)

    parser.set_defaults(handler=run)


def add_modelfile(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("modelfile", help="write a Qwen3 Ollama Modelfile")
    parser.add_argument(
        "source", nargs="?", help="FROM: an Ollama tag, hf.co/... GGUF, or a local .gguf path"
    )
    parser.add_argument("-o", "--output", help="file to write (default: standard output)")
    parser.add_argument(
        "--context", type=int, help="num_ctx (default: leave it to OLLAMA_CONTEXT_LENGTH)"
    )
    parser.add_argument(
        "--mode",
        choices=("thinking", "non-thinking"),
        default="thinking",
        help="which of Qwen3's recommended sampling defaults to bake in (default: thinking)",
    )
    parser.add_argument(
        "--stop",
        action="append",
        metavar="TOKEN",
        help="a stop token; repeat for several (default: Qwen3's <|im_start|> <|im_end|> ...)",
    )
    system = parser.add_mutually_exclusive_group()
    system.add_argument("--system", help="a default system prompt")
    system.add_argument("--system-file", help="read the default system prompt from this file")
    parser.add_argument(
        "--write-committed",
        action="store_true",
        help="regenerate the Modelfiles in ./modelfiles/ that Compose uses (run at the repo root)",
    )

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from duet import modelfile

        try:
            if args.write_committed:
                for path in modelfile.write_committed_modelfiles(Path.cwd() / "modelfiles"):
                    print(f"wrote {path}", file=sys.stderr)
                return 0
            if not args.source:
                parser.error("give a model source, or --write-committed")
            system_prompt = args.system
            if args.system_file:
                system_prompt = Path(args.system_file).read_text(encoding="utf-8")
            spec = modelfile.spec_for_mode(
                args.source,
                args.mode,
                context_length=args.context,
                stop=tuple(args.stop) if args.stop else modelfile.STOP_TOKENS,
                system=system_prompt,
            )
            # Ollama resolves a relative FROM path from the Modelfile's own directory.
            base_dir = Path(args.output).resolve().parent if args.output else Path.cwd()
            text = modelfile.render_modelfile(spec, base_dir)
        except (modelfile.ModelfileError, OSError) as error:
            print(f"duet modelfile: error: {error}", file=sys.stderr)
            return 2
        if args.output:
            with open(args.output, "w", encoding="utf-8") as out:
                out.write(text)
        else:
            sys.stdout.write(text)
        return 0

    parser.set_defaults(handler=run)


def add_doctor(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "doctor", help="check Docker, the NVIDIA runtime, GPU memory and the Compose services"
    )
    parser.add_argument(
        "--env-file",
        default=".env",
        help="the Compose .env file whose knobs to check (default: ./.env; missing is fine)",
    )
    parser.add_argument(
        "--project",
        help="Compose project name (default: COMPOSE_PROJECT_NAME, else duet)",
    )
    parser.add_argument(
        "--compose-file", default="docker-compose.yml", help="default: ./docker-compose.yml"
    )
    parser.add_argument(
        "--cpu", action="store_true", help="the CPU demo: skip the NVIDIA and GPU memory checks"
    )
    parser.add_argument(
        "--stack",
        action="store_true",
        help="check the running engines instead (DUET_* settings): models, prompt-token parity, "
        "thinking, streaming, decode speed",
    )
    parser.add_argument(
        "--gpu", help="with --stack: the card's name, where nvidia-smi cannot see it"
    )

    def run(args: argparse.Namespace) -> int:
        if args.stack:
            from duet.stackcheck import run_stack_check

            return run_stack_check(gpu_name=args.gpu)
        from duet.doctor import run_doctor

        return run_doctor(
            env_file=args.env_file,
            project=args.project,
            compose_file=args.compose_file,
            cpu=args.cpu,
        )

    parser.set_defaults(handler=run)


def add_bench(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("bench", help="measure Duet against the engines it serves")
    kinds = parser.add_subparsers(dest="bench", required=True)
    relay = kinds.add_parser(
        "relay", help="stream the same requests directly and through Duet; print what Duet adds"
    )
    relay.add_argument(
        "--engines", default="vllm,ollama", help="comma-separated (default: vllm,ollama)"
    )
    relay.add_argument("-n", "--requests", type=int, default=30, help="per engine and path")
    relay.add_argument("--max-tokens", type=int, default=64, help="tokens per answer (default 64)")
    relay.add_argument(
        "--settle-ms",
        type=float,
        default=10.0,
        help="pause before each request, so that none pays for the last one's end (default 10)",
    )
    relay.add_argument(
        "--json", help="write the run's summary (setting, numbers, verdicts) to this file"
    )
    relay.add_argument(
        "--raw", help="write every request's numbers here (default: the run's temporary folder)"
    )
    relay.add_argument(
        "--accounts",
        action="store_true",
        help="also through a Duet in accounts mode, signed in, in the same rounds (a fourth path)",
    )
    relay.add_argument(
        "--no-nginx",
        dest="nginx",
        action="store_false",
        help="leave out the paths through nginx in front of Duet (shipped site, and buffering)",
    )
    relay.add_argument(
        "--open-webui",
        metavar="URL",
        help="also through this running Open WebUI (auth off, pointed at the same Ollama), for"
        " ollama: services/dev/run-open-webui.sh starts one",
    )

    def run(args: argparse.Namespace) -> int:
        from duet.bench.relay import run_bench_relay

        names = [name.strip() for name in args.engines.split(",") if name.strip()]
        return run_bench_relay(
            names,
            args.requests,
            args.max_tokens,
            args.json,
            args.raw,
            args.accounts,
            args.nginx,
            args.open_webui,
            args.settle_ms / 1000,
        )

    relay.set_defaults(handler=run)

    from duet.bench import load_cli

    load_cli.add_arguments(kinds.add_parser("load", help=load_cli.HELP))


def add_users(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "users", help="team accounts, from the shell (DUET_DATABASE): the first admin, recovery"
    )
    actions = parser.add_subparsers(dest="users", required=True)
    create = actions.add_parser("create", help="make an account (asks for its password)")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="an admin (the first must be one)")
    actions.add_parser("list", help="every account, its role and state")
    reset = actions.add_parser(
        "reset-password", help="set a new password, to be changed at next sign-in"
    )
    reset.add_argument("name")

    def run(args: argparse.Namespace) -> int:
        from duet.auth import users_command

        if args.users == "create":
            return users_command.create_user(args.name, admin=args.admin)
        if args.users == "reset-password":
            return users_command.reset_password(args.name)
        return users_command.list_users()

    parser.set_defaults(handler=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="duet", description="Qwen3 on vLLM and Ollama, side by side, with honest numbers."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (add_serve, add_dev, add_modelfile, add_doctor, add_bench, add_users):
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
