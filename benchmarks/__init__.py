"""The benchmark harness: one workload, many writers, numbers side by side.

Run ``python -m benchmarks --help`` (or ``make bench``).
"""
