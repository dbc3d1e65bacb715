"""The conformance suite and the crash kit reject backends that break a guarantee: each
broken backend of ``broken_backends.py`` runs the suite (in a pytest of its own) and the tests
that guard what it breaks must fail."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent

MODULE = """
import random

import pytest

import test_conformance as base
from broken_backends import register
from trailstore.testing import CrashKit

register()


class TestBroken(base.TestLocalBackend):
    crash_kills = {kills}

    @pytest.fixture
    def trail_url(self, tmp_path):
        return "{scheme}://" + str(tmp_path / "trail")

    @pytest.fixture
    def crash_kit(self, trail_url, storage_options):
        return CrashKit(
            trail_url, storage_options, random.Random(5), setup="broken_backends:register"
        )
"""


@pytest.mark.parametrize(
    ("scheme", "selection", "must_fail", "kills"),
    [
        (
            "forgetful",
            "handed_out",
            [
                "test_ids_handed_out_stay_spent_after_an_abort",
                "test_ids_a_killed_batch_writer_handed_out_are_not_reused_by_a_running_writer",
            ],
            8,
        ),
        (
            "forgetful",
            "sigkilled and batch",
            ["test_sigkilled_writers_lose_nothing_and_reuse_no_handed_out_id[[]batch[]]"],
            48,  # a kill must land while handed-out IDs are unflushed: 24 once missed
        ),
        (
            "linkfollowing",
            "symlinks",
            [
                "test_symlinks_below_the_root_are_refused_and_never_written_through[[]shop[]]",
                "test_symlinks_below_the_root_are_refused_and_never_written_through[[]shop/orders[]]",
            ],
            8,
        ),
        (
            "unlocked",
            "excludes",
            [
                "test_begin_excludes_a_second_backend_of_the_trail",
                "test_begin_excludes_a_second_process",
            ],
            8,
        ),
        ("spendingabort", "abort", ["test_abort_writes_nothing_and_gives_the_ids_back"], 8),
        ("overwriting", "created_once", ["test_evidence_files_are_created_once"], 8),
    ],
    ids=[
        "forgetful-session",
        "forgetful-crash",
        "follows-links",
        "no-lock",
        "abort-spends",
        "evidence-overwritten",
    ],
)
def test_the_suite_rejects_a_broken_backend(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
    selection: str,
    must_fail: list[str],
    kills: int,
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), *sys.path]))
    pytester.makeini("[pytest]\nmarkers =\n    slow: long-running tests\n")
    pytester.makepyfile(test_broken=MODULE.format(scheme=scheme, kills=kills))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", selection, "-rf")
    for name in must_fail:
        result.stdout.fnmatch_lines([f"FAILED test_broken.py::TestBroken::{name}*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
