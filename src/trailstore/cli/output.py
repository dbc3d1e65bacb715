"""What the command line writes: results on stdout (a reader that goes away, as ``| head``
does, ends the command quietly), one-line messages on stderr, and the exit codes."""

from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from enum import IntEnum

import click
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.table import Table

from trailstore.reader import ReadReport

#: how the program names itself in messages, usage lines and completion
PROGRAM = "trailstore"


class ExitCode(IntEnum):
    OK = 0
    #: the operation failed (storage, conflict, a tampered trail, a demo that does not match)
    FAILED = 1
    #: the invocation is wrong (bad flag, bad JSON, bad name, no trail root)
    USAGE = 2
    #: ``verify`` on a trail without any checkpoint: nothing could be verified
    UNVERIFIABLE = 3
    INTERRUPTED = 130


class UsageError(Exception):
    """The command line cannot work as given (exit code 2)."""


class StdoutClosed(Exception):
    """The reader of our standard output went away (``| head``)."""


def write(text: str) -> None:
    """Write to stdout and flush, turning a closed pipe into ``StdoutClosed``."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError as exc:
        raise StdoutClosed from exc


def write_lines(lines: Iterable[bytes], *, live: bool = False) -> None:
    """Write stored lines to stdout as the bytes they are (no re-encoding); ``live`` sends
    each on at once (a follow), not when the buffer fills."""
    try:
        sys.stdout.flush()
        out = sys.stdout.buffer
        for line in lines:
            out.write(line)
            if live:
                out.flush()
        out.flush()
    except BrokenPipeError as exc:
        raise StdoutClosed from exc


# the rules under the header and above the footer, and nothing else: what a script can split
_ASCII_RULES = box.Box("    \n    \n -- \n    \n    \n -- \n    \n    \n", ascii=True)


def write_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], footer: Sequence[str]
) -> None:
    """Write a table whose first column is text and the others numbers, ``footer`` (a total)
    ruled off below. Bold and box-drawn on a terminal; plain ASCII anywhere else."""
    terminal = sys.stdout.isatty()
    table = Table(
        box=box.SIMPLE if terminal else _ASCII_RULES,
        show_edge=False,
        pad_edge=False,
        show_footer=True,
    )
    for number, (header, total) in enumerate(zip(headers, footer, strict=True)):
        table.add_column(header, total, justify="right" if number else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    rendered = io.StringIO()
    # as wide as the table needs: a row is never wrapped or cut
    Console(file=rendered, force_terminal=terminal, width=1 << 16, highlight=False).print(table)
    write(rendered.getvalue())


def silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def say(message: str, level: str = "error") -> None:
    """One message on stderr: ``trailstore: LEVEL: MESSAGE``."""
    print(f"{PROGRAM}: {level}: {message}", file=sys.stderr)


def one_line(error: BaseException) -> str:
    """A one-line description of an expected error (pydantic's reports are multi-line)."""
    cause = error.__cause__
    if isinstance(cause, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'event'}: {problem['msg']}"
            for problem in cause.errors()
        )
        return f"invalid audit event: {problems}"
    return " ".join(str(error).split())


def say_usage_error(error: click.UsageError) -> None:
    """A parsing error as one line that names the flag and where help is: ``trailstore append:
    error: argument --after: invalid JSON (…) (see trailstore append --help)``."""
    command = error.ctx.command_path if error.ctx is not None else PROGRAM
    if isinstance(error, click.BadParameter) and not isinstance(error, click.MissingParameter):
        flag = "/".join(error.param.opts) if error.param is not None else error.param_hint
        message = f"argument {flag}: {error.message}"
    else:
        message = error.format_message().rstrip(".")
    print(f"{command}: error: {message} (see {command} --help)", file=sys.stderr)


class StderrLogHandler(logging.Handler):
    """Library warnings (damage met, torn tails repaired) as ``trailstore: warning: …``."""

    def emit(self, record: logging.LogRecord) -> None:
        say(record.getMessage(), record.levelname.lower())


def report_damage(report: ReadReport) -> None:
    """Summarise on stderr what a reader skipped or found missing."""
    if report.clean:
        return
    missing_ids = sum(last - first + 1 for first, last in report.gaps)
    say(
        f"damage met while reading: {report.malformed_lines} malformed line(s), "
        f"{report.torn_lines} torn line(s), {report.missing_segments} missing segment(s), "
        f"{missing_ids} missing ID(s), {report.duplicate_ids} duplicate ID(s)",
        "warning",
    )


def human_bytes(size: float) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"
