"""The ``plaid`` command. Each subcommand lives next to the library code it drives and registers itself here.

A subcommand module exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments. Modules import heavy dependencies inside ``func`` so ``plaid --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

# One line per subcommand module, in the order they appear in --help.
COMMAND_MODULES = [
    "plaid.data.cli",  # plaid data build / plaid data info
    "plaid.evaluation.cli",  # plaid evaluate / plaid evaluate-csp
    "plaid.training.cli",  # plaid push / plaid merge
    "plaid.sampling.cli",  # plaid sample
    "plaid.preferences.cli",  # plaid pairs / plaid align
    "plaid.relax",  # plaid relax
    "plaid.benchmark.cli",  # plaid benchmark csp / plaid benchmark gen
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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # pymatgen warns for every noble gas it sorts by electronegativity (CIF writing); it is noise for users
    warnings.filterwarnings("ignore", message="No Pauling electronegativity")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
