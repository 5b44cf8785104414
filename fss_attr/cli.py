"""The ``fss-attr`` command line. Each sub-command is a module in :mod:`fss_attr.commands` that defines
``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys


def _commands():
    import fss_attr.commands as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"fss_attr.commands.{info.name}")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (``fss-attr demo: error: argument --size: ...``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fss-attr", description="Explain matching-based vision models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _commands():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from fss_attr.validation import OptionError

    try:
        return int(args._run(args) or 0)
    except OptionError as e:
        print(f"fss-attr {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
