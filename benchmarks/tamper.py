"""``python -m benchmarks.tamper``: the detection table. Every attack of the tamper suite
(``trailstore.testing.evidence.ATTACKS``) applied many times at random places to a trail that
three writer processes wrote with rotation — on the local disk and, with the trailstore-s3
plugin, on a moto S3 server — counting how often ``verify --full`` caught it and named its
place."""

from __future__ import annotations

import importlib.util
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import click
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from benchmarks.__main__ import _moto_server
from trailstore.evidence import Status, verify_trail
from trailstore.progress import ProgressBar
from trailstore.registry import open_backend
from trailstore.testing.evidence import ATTACKS, EvidenceConformance, Recording, places


def _tally(
    url: str, options: dict[str, Any], fs: AbstractFileSystem, root: str, rounds: int
) -> dict[str, tuple[int, int, int]]:
    """``attack -> (tried, caught, placed)``."""
    EvidenceConformance().write_trail(url, options, 300, processes=3)
    tried: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    placed: Counter[str] = Counter()
    chooser = random.Random(11)
    with ProgressBar(rounds * len(ATTACKS), url, enabled=sys.stderr.isatty()) as bar:
        for name, attack in sorted(ATTACKS.items()):
            for _ in range(rounds):
                recording = Recording(fs)
                try:
                    expected = attack(recording, root, chooser)
                    report = verify_trail(url, storage_options=options, full=True)
                finally:
                    recording.undo()
                tried[name] += 1
                if report.status is Status.TAMPERED:
                    caught[name] += 1
                if any(
                    places(problem, expected)
                    for problem in report.problems
                    if problem.kind in expected.kinds
                ):
                    placed[name] += 1
                bar.advance()
    return {name: (tried[name], caught[name], placed[name]) for name in sorted(ATTACKS)}


@click.command(help=__doc__)
@click.option("--rounds", default=50, show_default=True, help="tries of each attack per storage")
@click.option("--no-s3", is_flag=True, help="the local disk only")
def main(rounds: int, no_s3: bool) -> None:
    tables: dict[str, dict[str, tuple[int, int, int]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = str(Path(scratch) / "trail")
        tables["local"] = _tally(root, {}, LocalFileSystem(), root, rounds)
    if not no_s3 and importlib.util.find_spec("trailstore_s3") is not None:
        with _moto_server() as context:
            url = f"s3://{context['s3_bucket']}/tamper"
            options = dict(context["s3_storage_options"])
            backend = open_backend(url, **options)
            fs, prefix = backend.fs, backend.store.layout.root  # type: ignore[attr-defined]
            tables["S3 (moto)"] = _tally(url, options, fs, prefix, rounds)
    print("| attack | " + " | ".join(f"{name}: tried / caught / placed" for name in tables) + " |")
    print("| --- |" + " --- |" * len(tables))
    for attack in sorted(ATTACKS):
        cells = [" / ".join(map(str, table[attack])) for table in tables.values()]
        print(f"| {attack} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
