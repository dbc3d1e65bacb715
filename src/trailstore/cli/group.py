"""The ``trailstore`` click group, how its help reads, and ``command``, which adds a command.

A command is one function, ``function(trail, **options) -> exit code``, under ``@command``
and its own ``click.option``s; ``trail`` merges ``--root``/``--storage-option`` given before
and after the command's name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from trailstore import __version__
from trailstore.cli.options import Trail, trail_options
from trailstore.cli.output import PROGRAM

#: the environment variable that asks for shell completion (click's convention)
COMPLETE_VARIABLE = f"_{PROGRAM.upper()}_COMPLETE"


class _Formatter(click.HelpFormatter):
    """Help in the lower-case ``usage:`` of the rest of the messages."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, "usage: " if prefix is None else prefix)


class _Context(click.Context):
    formatter_class = _Formatter


def _write_examples(command: click.Command, formatter: click.HelpFormatter) -> None:
    """The epilog as written: its examples keep their lines and indentation."""
    if command.epilog:
        formatter.write_paragraph()
        formatter.write(command.epilog.rstrip("\n") + "\n")


class _Command(click.Command):
    context_class = _Context

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_examples(self, formatter)


class _Group(click.Group):
    context_class = _Context
    command_class = _Command

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_examples(self, formatter)


_EPILOG = f"""\
The trail root is --root (before or after the command) or $TRAILSTORE_ROOT.
exit codes: 0 ok, 1 failed, 2 bad invocation, 3 nothing to verify, 130 interrupted

examples:
  trailstore demo
  export TRAILSTORE_ROOT=./trailstore-demo
  trailstore stats
  trailstore query --domain shop --limit 5 | jq .payload.after
  trailstore COMMAND --help

shell completion of commands and flags (bash 4.4+, zsh, fish):
  eval "$({COMPLETE_VARIABLE}=bash_source trailstore)"    # in ~/.bashrc
  eval "$({COMPLETE_VARIABLE}=zsh_source trailstore)"     # in ~/.zshrc
  {COMPLETE_VARIABLE}=fish_source trailstore > ~/.config/fish/completions/trailstore.fish"""


@click.group(
    PROGRAM,
    cls=_Group,
    help="Append to, query, replay and inspect append-only audit trails.",
    epilog=_EPILOG,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, "--version", prog_name=PROGRAM, message="%(prog)s %(version)s")
@trail_options
@click.pass_context
def trailstore(ctx: click.Context, root: str | None, storage_option: dict[str, Any]) -> None:
    ctx.obj = Trail(root, storage_option)


def command(
    name: str, *, summary: str, description: str, examples: str
) -> Callable[[Callable[..., int]], click.Command]:
    """Add ``function`` to ``trailstore`` as the command ``name``: ``summary`` in the list of
    commands, ``description`` and ``examples`` (lines of ``trailstore name ...``) in its help.
    ``function(trail, **options)`` returns the exit code."""

    def add(function: Callable[..., int]) -> click.Command:
        @trailstore.command(
            name, help=description, short_help=summary, epilog=f"examples:\n{examples}"
        )
        @trail_options
        @functools.wraps(function)  # carries the options click's decorators put on function
        def run(root: str | None, storage_option: dict[str, Any], **options: Any) -> int:
            outer: Trail = click.get_current_context().obj  # the group's options
            return function(outer.within(root, storage_option), **options)

        return run

    return add
