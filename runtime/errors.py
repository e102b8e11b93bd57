"""Errors that are the user's to fix, and the entry point wrapper that shows them as messages.

A ``UserError`` (bad data, a bad dataset_info.json entry, a wrong setting) reaches the user as one
``error: ...`` paragraph and exit status 2: a traceback would only bury the message. Any other
exception is a bug in ffc and keeps its traceback.

Pure Python: the generated scripts import this before torch.
"""

from __future__ import annotations

import sys
from typing import Callable

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (128 + SIGINT)


class UserError(Exception):
    """An error whose message tells the user what to fix; shown without a traceback."""


# Error types defined where UserError cannot be their base (e.g. modules that must not import this one).
_REGISTERED: tuple[type[BaseException], ...] = ()


def register(*types: type[BaseException]) -> None:
    """Treat these exception types as user errors too."""
    global _REGISTERED
    _REGISTERED += tuple(t for t in types if t not in _REGISTERED)


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, (UserError, *_REGISTERED))


def run(main: Callable[[], object]) -> None:
    """Call ``main()``; a user error becomes ``error: <message>`` on stderr and exit status 2.

    The generated scripts end with ``if __name__ == "__main__": run(main)``."""
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)  # the user stopped it: no traceback to read
    except Exception as exc:
        if not is_user_error(exc):
            raise
        sys.stdout.flush()
        message = str(exc).strip() or type(exc).__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
