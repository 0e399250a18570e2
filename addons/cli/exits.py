"""The exit codes of every `shopguard` command, and the guard that keeps them meaningful.

0 ok; 1 something was found where the command was asked to say so (`scan --fail-on`, a failing
`policy test` example); 2 usage, configuration or input error; 3 an internal error — a bug in
shopguard, never a finding: a script reading 1 as "personal data found" must not be misled.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable

from shopguard.engine.masking import mask_message

EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def guarded[**P](command: Callable[P, int]) -> Callable[P, int]:
    """`command`, with an unexpected exception reported (type, masked message, where) and
    turned into EXIT_INTERNAL instead of Python's traceback and exit 1."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return command(*args, **kwargs)
        except Exception as exc:  # the last line of defence of one command
            print(internal_error(exc), file=sys.stderr)
            return EXIT_INTERNAL

    return run


def internal_error(exc: BaseException) -> str:
    """What the user sees of a bug: its type, its message with values masked (the message of an
    exception raised on captured or typed-in data can quote that data), and the line it was
    raised at."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename.rpartition('/')[2]}:{frames[-1].lineno})" if frames else ""
    return (
        "shopguard: internal error (a bug in shopguard, please report it): "
        f"{type(exc).__name__}: {mask_message(str(exc))}{where}; exit code {EXIT_INTERNAL}"
    )
