"""The ``trailstore`` command line (click): append, query, replay, stats, evidence, lifecycle
and a self-checking demo. Each module below adds its commands to the group in ``group``.

Exit codes (``output.ExitCode``): 0 success, 1 the operation failed (storage, conflict, a demo
whose replay does not match, a trail that fails verification), 2 the invocation is wrong (bad
flag, bad JSON, bad name, no trail root), 3 nothing to verify (a trail without checkpoints),
130 interrupted.
"""

from __future__ import annotations

import logging
import os
import sys

import click
from click.shell_completion import shell_complete

# importing a module of commands adds its commands to the group
from trailstore.cli import (  # noqa: F401
    demo,
    evidence,
    export,
    history,
    lifecycle,
    reading,
    writing,
)
from trailstore.cli.group import COMPLETE_VARIABLE, trailstore
from trailstore.cli.output import (
    PROGRAM,
    ExitCode,
    StderrLogHandler,
    StdoutClosed,
    UsageError,
    one_line,
    say,
    say_usage_error,
    silence_stdout,
)
from trailstore.errors import (
    AuditTrailError,
    BackendNotFoundError,
    ConfigurationError,
    InvalidEventError,
    InvalidNameError,
)

#: errors that mean "the invocation is wrong" (exit 2); other trailstore errors exit 1
_USAGE_ERRORS = (InvalidNameError, InvalidEventError, ConfigurationError, BackendNotFoundError)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code.

    ``$_TRAILSTORE_COMPLETE`` set (by the shell's completion script) answers a completion
    request instead.
    """
    instruction = os.environ.get(COMPLETE_VARIABLE)
    if instruction:
        return shell_complete(trailstore, {}, PROGRAM, COMPLETE_VARIABLE, instruction)
    logger = logging.getLogger("trailstore")
    handler = StderrLogHandler(logging.WARNING)
    logger.addHandler(handler)
    try:
        with trailstore.make_context(PROGRAM, list(sys.argv[1:] if argv is None else argv)) as ctx:
            return int(trailstore.invoke(ctx))
    except click.exceptions.Exit as exc:  # --help and --version are done
        return exc.exit_code
    except click.UsageError as exc:
        say_usage_error(exc)
        return ExitCode.USAGE
    except StdoutClosed:
        silence_stdout()
        return ExitCode.OK
    except (UsageError, *_USAGE_ERRORS) as exc:
        say(one_line(exc))
        return ExitCode.USAGE
    except (AuditTrailError, OSError) as exc:
        say(one_line(exc))
        return ExitCode.FAILED
    except KeyboardInterrupt:
        say("interrupted")
        return ExitCode.INTERRUPTED
    finally:
        logger.removeHandler(handler)


__all__ = ["main"]
