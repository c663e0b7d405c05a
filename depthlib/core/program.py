"""The name a user typed to start depthlib's command line, for usage lines and hints."""

from __future__ import annotations

import argparse
import sys


def command_name() -> str:
    """"python -m depthlib" when the interpreter was started with -m (python -m depthlib, or an old module path such
    as python -m depthlib.pipeline), else "depthlib": the console script (or a caller of main(), e.g. a test)."""
    for arg in getattr(sys, "orig_argv", [])[1:]:   # the interpreter's own options come before the script or -m
        if arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")):
            return "python -m depthlib"
        if not arg.startswith("-"):
            break
    return "depthlib"


def parse_or_explain(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parser.parse_args(argv), but an option of comma-joined numbers (metavar "FX,FY,CX,CY") given with spaces gets
    a hint: argparse takes the first number as the value and calls the rest "unrecognized arguments"."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}{_spaced_list_hint(parser, argv, extra)}")
    return args


def _spaced_list_hint(parser: argparse.ArgumentParser, argv: list[str], extra: list[str]) -> str:
    """' (--intrinsics takes FX,FY,CX,CY: ... --intrinsics 570,570,320,240)' when argv has such an option followed by
    its numbers split by spaces, the later ones among `extra`; else ''."""
    lists: dict[str, str] = {}
    parsers = [parser]
    while parsers:
        for action in parsers.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += list(action.choices.values())
            elif action.metavar and "," in str(action.metavar):
                lists.update(dict.fromkeys(action.option_strings, str(action.metavar)))
    for i, opt in enumerate(argv):
        if opt in lists:
            n = lists[opt].count(",") + 1
            values = argv[i + 1:i + 1 + n]
            if len(values) == n and all(_number(v) for v in values) and all(v in extra for v in values[1:]):
                return (f" ({opt} takes {lists[opt]}: {n} numbers joined by commas, no spaces, e.g. "
                        f"{opt} {','.join(values)})")
    return ""


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
