"""The contract every backend keeps, as test classes a backend's own tests subclass.

- ``BackendConformance``: one test per guarantee, through the public writer and reader and
  through each method of the ``Backend``/``CommitSession`` contract;
- ``CrashConformance`` and ``CrashKit``: writer processes SIGKILLed in every durability mode,
  the trail then checked for lost, changed or reused IDs and unexplained gaps (and verified);
- ``EvidenceConformance``: trails verify when intact, and every kind of tampering is caught
  and placed (it needs hypothesis, as the project's tests do);
- ``LifecycleConformance`` (which includes ``EvidenceConformance``): the backend as an
  archive, of trails then pruned and read and verified across both tiers.

Importing this package needs pytest (a test dependency, not one of the library).
"""

from trailstore.testing.conformance import UNSAFE_NAMES, BackendConformance, sample_event
from trailstore.testing.crash import CrashConformance, CrashKit
from trailstore.testing.evidence import EvidenceConformance
from trailstore.testing.lifecycle import LifecycleConformance

__all__ = [
    "UNSAFE_NAMES",
    "BackendConformance",
    "CrashConformance",
    "CrashKit",
    "EvidenceConformance",
    "LifecycleConformance",
    "sample_event",
]
