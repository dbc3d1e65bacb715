"""``trailstore demo``: the self-checking demo (``trailstore.demo_trail``), printed, with the
commands to look at its trail next."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import time

import click

from trailstore.backend import Durability
from trailstore.cli.group import command
from trailstore.cli.options import (
    DEMO_ROOT,
    POSITIVE,
    Trail,
    durability_option,
    key_value_flags,
    max_file_size_option,
    progress_option,
)
from trailstore.cli.output import ExitCode, human_bytes, report_damage, write
from trailstore.demo_trail import DEMO_SEGMENT_BYTES, DemoTrail
from trailstore.progress import ProgressBar


def _program() -> str:
    """This program as the user can run it again from here: ``trailstore`` when that is on
    ``PATH``, else the path it was started by (``.venv/bin/trailstore``) or ``python -m``."""
    started = sys.argv[0]
    if os.path.basename(started) == "trailstore":
        on_path = shutil.which("trailstore")
        if on_path is not None and os.path.samefile(on_path, started):
            return "trailstore"
        return shlex.quote(_runnable_path(started))
    return f"{shlex.quote(_runnable_path(sys.executable))} -m trailstore"


def _runnable_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    if relative.startswith(os.pardir):
        return absolute
    return relative if os.sep in relative else os.path.join(os.curdir, relative)


@command(
    "demo",
    summary="write, query and replay a self-checking demo trail",
    description="Write a realistic trail of CRUD events over four streams (rotating segments), "
    "query it, replay every stream and check the replay against the records the demo kept in "
    f"memory. The root defaults to {DEMO_ROOT}; running again continues the same trail.",
    examples="  trailstore demo\n"
    "  trailstore demo --root /tmp/trail --events 20000 --seed 7 --durability batch",
)
@click.option(
    "--events", type=POSITIVE, default=3000, show_default=True, metavar="N", help="events to write"
)
@click.option("--seed", type=int, default=0, show_default=True, help="workload seed")
@max_file_size_option(DEMO_SEGMENT_BYTES, "segment size limit (small, so segments rotate)")
@durability_option("when each append counts as done")
@progress_option
def demo(
    trail: Trail,
    *,
    events: int,
    seed: int,
    max_file_size_bytes: int,
    durability: str,
    progress: bool,
) -> int:
    root = trail.given_root or DEMO_ROOT
    run = DemoTrail(root, storage_options=trail.storage_options, seed=seed)
    write(
        f"demo: {'continuing the' if run.continued else 'writing a new'} trail at {root}: "
        f"{events} events, seed {seed}, segments up to {human_bytes(max_file_size_bytes)}, "
        f"durability {durability}\n"
    )
    began = time.perf_counter()
    with ProgressBar(events, "writing", enabled=progress) as bar:
        written = run.write(
            events,
            max_file_size_bytes=max_file_size_bytes,
            durability=Durability(durability),
            advance=bar.advance,
        )
    rate = f"{written.events_per_second:,.0f} events/s"
    first = written.first_event_id
    write(f"wrote events #{first}..#{written.last_event_id} in {written.seconds:.2f} s ({rate})\n")

    check = run.check(written)
    counts = ", ".join(f"{count} {operation}s" for operation, count in check.operations.items())
    lines = [f"query: {sum(check.operations.values())} events since #{first}: {counts}"]
    for replay in check.replays:
        models = ", ".join(f"{count} {model}" for model, count in replay.records.items())
        lines.append(
            f"replay {replay.stream}: {models or 'no records'} (last event #{replay.last_event_id})"
        )
    mismatched = ", ".join(str(stream) for stream in check.mismatched)
    lines.append(f"replay matches: {'NO, differs in ' + mismatched if mismatched else 'yes'}")
    total = check.stats.total
    lines.append(
        f"summary: {total.events} events in the trail ({events} written now), "
        f"{len(check.stats.streams)} streams, {total.segments} segments, "
        f"{human_bytes(total.bytes)}, {rate}, {time.perf_counter() - began:.2f} s elapsed"
    )
    write("\n".join(lines) + "\n")
    report_damage(check.stats.damage)
    flags = key_value_flags("--storage-option", trail.storage_options)
    prefix = " ".join([_program(), "--root", shlex.quote(root), *flags])
    write(
        f"try: {prefix} stats\n"
        f"     {prefix} query --domain shop --category orders --last 3\n"
        f"     {prefix} replay --domain hr --category employees --key-field id --indent 2\n"
        f"     {prefix} verify\n"
    )
    return ExitCode.FAILED if mismatched else ExitCode.OK
