"""The ``plaid`` command. Each subcommand lives next to the library code it drives and registers itself here.

A subcommand module exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments. Modules import heavy dependencies inside ``func`` so ``plaid --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from .errors import EXIT_INTERRUPTED, EXIT_USAGE, PlaidError

# One line per subcommand module, in the order they appear in --help.
COMMAND_MODULES = [
    "plaid.data.cli",  # plaid data build / plaid data info
    "plaid.evaluation.cli",  # plaid evaluate / plaid evaluate-csp
    "plaid.training.cli",  # plaid push / plaid merge
    "plaid.sampling.cli",  # plaid sample
    "plaid.preferences.cli",  # plaid pairs / plaid align
    "plaid.relax",  # plaid relax
    "plaid.benchmark.cli",  # plaid benchmark csp / plaid benchmark gen
    "plaid.app.cli",  # plaid serve
    "plaid.convert",  # plaid convert crystallm
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plaid",
        description=(
            "plaid: fine-tune language models to generate inorganic crystal structures (Wyckoff, coordinate or "
            "CIF text), sample them, evaluate them (validity, coverage, MLIP relaxation, energy above hull, "
            "S.U.N.) and align them toward stable, novel materials with DPO.\n\n"
            "Training itself runs through the recipes: accelerate launch recipes/sft.py --config CONFIG.yaml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of expected errors too (or set PLAID_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Record each (sub)command's name ("data build") in its parser's defaults, for error messages."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(command_name=sub.prog.removeprefix("plaid ").strip())
                _name_commands(sub)


def _debug(args) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("PLAID_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (see plaid.errors): expected errors print one line on stderr."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or an argparse usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    # pymatgen warns for every noble gas it sorts by electronegativity (CIF writing); it is noise for users
    warnings.filterwarnings("ignore", message="No Pauling electronegativity")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a command relaunching itself passes on
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .cli_checks import after_command, before_command

    name = getattr(args, "command_name", args.command)
    try:
        before_command(args)
        result = args.func(args)
        if not result:
            after_command(args)
    except PlaidError as exc:
        if _debug(args):
            raise
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"plaid {name}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        if _debug(args):
            raise
        print(f"plaid {name}: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
