"""The conformance suite and the crash kit on Google Cloud Storage (gcsfs on
gcp-storage-emulator) and Azure Blob Storage (adlfs on Azurite), both started here on
127.0.0.1. Neither needs code of its own: they are fsspec URLs (``gs://``, ``az://``).

What the emulators enforce decides the coordination: Azurite refuses a second create-only
write (conditional writes, writers on any host); gcp-storage-emulator ignores the condition
gcsfs sends, which the probe detects, so GCS trails there are coordinated by a lock on this
host.
"""

from __future__ import annotations

import os

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs is imported

import http.server
import random
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from trailstore.backends.fsspec_url import FsspecBackend
from trailstore.coordinators.conditional import ConditionalWrites
from trailstore.coordinators.local_lock import LockedCommits
from trailstore.registry import open_backend
from trailstore.testing import BackendConformance, CrashConformance, CrashKit, LifecycleConformance

AZURITE = Path(__file__).with_name("emulators") / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's well-known development account
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
BUCKET = "trailstore-tests"


@pytest.fixture(scope="session")
def gcs_options() -> Iterator[dict[str, Any]]:
    """gcp-storage-emulator in this process, on a free port of 127.0.0.1."""
    from gcp_storage_emulator.server import create_server

    # a single-threaded server with a listen backlog of 5 stalls ~1 s on bursts
    http.server.HTTPServer.request_queue_size = 128
    server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=BUCKET)
    server.start()
    port = server._api._httpd.server_address[1]
    yield {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon"}
    server.stop()


@pytest.fixture(scope="session")
def azure_options(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Azurite (npm, installed by ``make setup``) as a process, on a free port of 127.0.0.1."""
    if not AZURITE.exists():
        pytest.fail(f"{AZURITE} is missing: run `make setup` (npm ci in tests/emulators)")
    command = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", "0"]
    command += ["--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent"]
    command += ["--disableTelemetry"]
    process = subprocess.Popen(
        command,
        cwd=tmp_path_factory.mktemp("azurite"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    port = None
    for line in process.stdout:
        found = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
        if found:
            port = int(found.group(1))
            break
    assert port is not None, "Azurite did not start"
    drain = subprocess.Popen(["cat"], stdin=process.stdout, stdout=subprocess.DEVNULL)
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURE_ACCOUNT};"
    )
    options = {"connection_string": connection}
    fsspec.filesystem("az", **options).mkdir(BUCKET)
    yield options
    process.terminate()
    process.wait(timeout=30)
    drain.wait(timeout=30)


class _ObjectStoreTrails(BackendConformance, CrashConformance, LifecycleConformance):
    """A fresh prefix of the emulator's bucket for every test."""

    scheme: str
    tamper_examples = 15

    @pytest.fixture
    def trail_url(self) -> str:
        return f"{self.scheme}://{BUCKET}/{uuid.uuid4().hex}"

    @pytest.fixture
    def crash_kit(self, trail_url: str, storage_options: dict[str, Any]) -> CrashKit:
        # an emulator on a loaded machine takes a while per commit: writers live long enough
        # to acknowledge something (a batch writer only does at its flushes)
        return CrashKit(
            trail_url, storage_options, random.Random(11), segment_bytes=2000, kill_within=1.5
        )

    def test_the_url_opens_the_generic_fsspec_backend(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        assert type(open_backend(trail_url, **storage_options)) is FsspecBackend


class TestGoogleCloudStorage(_ObjectStoreTrails):
    scheme = "gs"

    @pytest.fixture
    def storage_options(self, gcs_options: dict[str, Any]) -> dict[str, Any]:
        return gcs_options

    def test_the_emulator_ignores_create_only_so_writers_share_a_host_lock(
        self, trail_url: str, storage_options: dict[str, Any], caplog: pytest.LogCaptureFixture
    ) -> None:
        backend = open_backend(trail_url, **storage_options)
        assert isinstance(backend.coordinator, LockedCommits)
        assert "does not enforce create-only writes" in caplog.text
        assert backend.coordination == "a lock on this host: every writer must run on it"


class TestAzureBlobStorage(_ObjectStoreTrails):
    scheme = "az"

    @pytest.fixture
    def storage_options(self, azure_options: dict[str, Any]) -> dict[str, Any]:
        return azure_options

    def test_azurite_enforces_create_only_so_writers_may_be_on_any_host(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        backend = open_backend(trail_url, **storage_options)
        assert isinstance(backend.coordinator, ConditionalWrites)
        assert backend.coordination == "conditional writes: writers may run on any number of hosts"


def test_the_azurite_install_is_the_locked_one() -> None:
    """``make setup`` installs exactly what ``tests/emulators/package-lock.json`` pins."""
    assert shutil.which("npm") is not None
    lock = (AZURITE.parents[2] / "package-lock.json").read_text()
    assert '"node_modules/azurite"' in lock and AZURITE.exists()
