"""Options and value types the commands share: where the trail is (``--root``,
``--storage-option``), its archive, progress bars, and how times, durations, sizes, counts and
JSON are read. A bad value is refused by click as a usage error naming the flag (exit 2)."""

from __future__ import annotations

import functools
import json
import math
import os
import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import click

from trailstore.backend import Durability
from trailstore.cli.output import UsageError
from trailstore.names import validate_name

ROOT_ENVIRONMENT_VARIABLE = "TRAILSTORE_ROOT"
#: where ``demo`` writes when no root is given (it ignores $TRAILSTORE_ROOT)
DEMO_ROOT = "./trailstore-demo"

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


# -- parsing -----------------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def strict_json(text: str) -> Any:
    """Parse JSON as the standard defines it: ``NaN`` and ``Infinity`` are refused, and so is
    a number too large for a float (which Python would read as infinity)."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def parse_json_object(text: str) -> dict[str, Any]:
    try:
        value = strict_json(text)
    except ValueError as exc:
        raise ValueError(f"invalid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def parse_key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: VALUE is JSON when it parses as JSON, else the string itself."""
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def parse_timestamp(text: str) -> float:
    """Unix seconds, or ISO-8601 (a time without a zone is UTC)."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"expected Unix seconds or ISO-8601, got {text!r}") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite number of seconds, got {text!r}")
    return seconds


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds."""
    number, unit = (text[:-1], text[-1]) if text[-1:].isalpha() else (text, "s")
    seconds = _DURATION_UNITS.get(unit.lower())
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if seconds is None or not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a duration like 90d, 12h, 30m or 45s, got {text!r}")
    return timedelta(seconds=value * seconds)


def parse_size(text: str) -> int:
    """Bytes: ``500MB``, ``10GiB``, ``1048576``."""
    stripped = text.strip()
    digits = stripped.rstrip("BbKkMmGgTtIi")
    unit = stripped[len(digits) :].lower().removesuffix("b")
    factor = _SIZE_UNITS.get(unit)
    try:
        value = float(digits)
    except ValueError:
        value = math.nan
    if factor is None or not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a size like 500MB or 10GiB, got {text!r}")
    return int(value * factor)


def parse_seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = _finite_float(text)
    except ValueError:
        raise ValueError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"expected seconds > 0, got {text!r}")
    return value


def count_parser(minimum: int) -> Callable[[str], int]:
    """A parser of whole numbers >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise ValueError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


# -- click value types ---------------------------------------------------------------------------


if TYPE_CHECKING:  # click 8.4 made its types generic in the value; older releases are not
    _ParamType = click.ParamType[Any]
    _Choice = click.Choice[str]
else:
    _ParamType = click.ParamType
    _Choice = click.Choice


class Parsed(_ParamType, Generic[T]):
    """A click type that reads a value with ``parse``, whose ``ValueError`` says what is wrong."""

    def __init__(self, name: str, parse: Callable[[str], T]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> T:
        if not isinstance(value, str):  # a default, given already parsed
            return cast(T, value)
        try:
            return self._parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Choice(_Choice):
    """click's choice, refusing a value in the words the other refusals use."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in self.choices:
            return value
        choices = ", ".join(str(choice) for choice in self.choices)
        self.fail(f"invalid choice: {value!r} (choose from {choices})", param, ctx)


JSON_OBJECT = Parsed("json", parse_json_object)
KEY_VALUE = Parsed("key=value", parse_key_value)
TIMESTAMP = Parsed("time", parse_timestamp)
DURATION = Parsed("duration", parse_duration)
SIZE = Parsed("size", parse_size)
SECONDS = Parsed("seconds", parse_seconds)
NATURAL = Parsed("natural", count_parser(0))
POSITIVE = Parsed("positive", count_parser(1))
DURABILITY = Choice([mode.value for mode in Durability])
FILE = click.Path(dir_okay=False, path_type=Path)


# -- where the trail is --------------------------------------------------------------------------


@dataclass(frozen=True)
class Trail:
    """The trail a command works on, as given before and after the command's name."""

    #: ``--root``, if given (``root`` falls back to $TRAILSTORE_ROOT)
    given_root: str | None
    storage_options: dict[str, Any]

    @property
    def root(self) -> str:
        """``--root``, else $TRAILSTORE_ROOT; neither is a usage error."""
        root = self.given_root or os.environ.get(ROOT_ENVIRONMENT_VARIABLE) or None
        if root is None:
            raise UsageError(
                f"no trail root: pass --root PATH_OR_URL or set {ROOT_ENVIRONMENT_VARIABLE}"
            )
        return root

    def within(self, root: str | None, storage_options: dict[str, Any]) -> Trail:
        """This trail, as the options after the command name refine it."""
        return Trail(root or self.given_root, {**self.storage_options, **storage_options})


def _as_dict(ctx: click.Context, param: click.Parameter, pairs: Iterable[tuple[str, Any]]) -> Any:
    return dict(pairs)


def key_value_option(flag: str, help: str) -> Callable[[F], F]:
    """A repeatable ``FLAG KEY=VALUE`` option, handed to the command as a dict: the
    storage_options of a backend (``--storage-option``, ``--archive-option``, ``--to-option``)."""
    return click.option(
        flag, type=KEY_VALUE, multiple=True, metavar="KEY=VALUE", callback=_as_dict, help=help
    )


def key_value_flags(flag: str, options: dict[str, Any]) -> list[str]:
    """Shell words of ``key_value_option`` flags that give back ``options`` when parsed."""
    words = []
    for key, value in options.items():
        plain = isinstance(value, str) and parse_key_value(f"{key}={value}") == (key, value)
        text = f"{key}={value}" if plain else f"{key}={json.dumps(value)}"
        words += [flag, shlex.quote(text)]
    return words


def trail_options(function: F) -> F:
    """``--root`` and ``--storage-option``: the group takes them before a command's name and
    every command after it."""
    root = click.option(
        "--root",
        metavar="PATH_OR_URL",
        help="trail root: a directory, memory://NAME or s3://BUCKET/PREFIX "
        f"(default: ${ROOT_ENVIRONMENT_VARIABLE}; for demo: {DEMO_ROOT})",
    )
    storage = key_value_option(
        "--storage-option",
        "passed to the backend as storage_options; VALUE is parsed as JSON when it is JSON, "
        "else taken as a string (repeatable)",
    )
    return root(storage(function))


_FILTER_KEYWORDS = ("domain", "category", "model_name", "min_id", "max_id", "since", "until")


def event_filters(function: F) -> F:
    """The filters of ``query`` (``--domain`` ... ``--until``), handed to ``function`` as one
    ``filters`` keyword: the keywords of ``AuditTrailReader.iter_events``, names checked."""

    @functools.wraps(function)
    def run(*args: Any, **options: Any) -> Any:
        given = {name: options.pop(name) for name in _FILTER_KEYWORDS}
        filters = {
            "domains": [validate_name("domain", name) for name in given["domain"]] or None,
            "categories": [validate_name("category", name) for name in given["category"]] or None,
            "model_names": list(given["model_name"]) or None,
            "min_event_id": given["min_id"],
            "max_event_id": given["max_id"],
            "min_timestamp": given["since"],
            "max_timestamp": given["until"],
        }
        return function(*args, filters=filters, **options)

    for option in reversed(
        (
            click.option("--domain", multiple=True, help="only this domain (repeatable)"),
            click.option("--category", multiple=True, help="only this category (repeatable)"),
            click.option("--model-name", multiple=True, help="only this model (repeatable)"),
            click.option("--min-id", type=NATURAL, metavar="ID", help="smallest event_id"),
            click.option("--max-id", type=NATURAL, metavar="ID", help="largest event_id"),
            click.option(
                "--since",
                type=TIMESTAMP,
                metavar="TIME",
                help="earliest timestamp: Unix s or ISO-8601",
            ),
            click.option(
                "--until",
                type=TIMESTAMP,
                metavar="TIME",
                help="latest timestamp: Unix s or ISO-8601",
            ),
        )
    ):
        run = option(run)
    return cast(F, run)


READ_ARCHIVE = (
    "also read the trail's archive (where trailstore archive copied it): segments pruned from "
    "the trail are read from there"
)


def archive_options(summary: str) -> Callable[[F], F]:
    """``--archive URL`` (described by ``summary``) and its ``--archive-option``."""

    def add(function: F) -> F:
        archive = click.option("--archive", metavar="URL", help=summary)
        options = key_value_option(
            "--archive-option",
            "storage_options of the archive's backend, as --storage-option (repeatable)",
        )
        return archive(options(function))

    return add


def _progress_wanted(ctx: click.Context, param: click.Parameter, value: bool | None) -> bool:
    return sys.stderr.isatty() if value is None else value


progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    callback=_progress_wanted,
    help="show a progress bar on stderr (default: when stderr is a terminal)",
)


def durability_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--durability",
        type=DURABILITY,
        default=Durability.FSYNC.value,
        show_default=True,
        help=help,
    )


def max_file_size_option(default: int, help: str) -> Callable[[F], F]:
    return click.option(
        "--max-file-size-bytes",
        type=POSITIVE,
        default=default,
        show_default=True,
        metavar="N",
        help=help,
    )
