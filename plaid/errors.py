"""The errors a plaid command expects, and the exit code each gives.

``plaid.cli.main`` catches :class:`PlaidError` and prints its message as one line on stderr,
``plaid <command>: error: <message>``, then exits with the error's ``exit_code``. Anything else is a bug: its
traceback is printed (exit 1). ``--debug`` or ``PLAID_DEBUG=1`` re-raise expected errors too, with their traceback.

| code | meaning |
|---|---|
| 0 | success |
| 1 | an unexpected error (a bug): traceback printed |
| 2 | usage or input error: bad or incompatible options, a missing, unreadable or wrong-format input, a directory that is not a model, an output that cannot be written, a resume with other settings. Nothing was run |
| 3 | nothing produced: the input held no usable item (0 structures encoded, 0 samples, 0 pairs...); the command's report of why was written and the message gives the counts |
| 130 | interrupted (Ctrl-C); re-running the same command resumes |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_NOTHING = 3
EXIT_INTERRUPTED = 130


class PlaidError(Exception):
    """An expected failure with a message for the user (one line: what is wrong and what to do)."""

    exit_code = EXIT_BUG


class UsageError(PlaidError):
    """Bad or incompatible options, or a resume with other settings than the output was made with."""

    exit_code = EXIT_USAGE


class InputError(UsageError):
    """A missing, unreadable or wrong-format input file, a directory that is not a model, or an unwritable output."""


class NothingProducedError(PlaidError):
    """The command ran but its input held no usable item; its report says why."""

    exit_code = EXIT_NOTHING
