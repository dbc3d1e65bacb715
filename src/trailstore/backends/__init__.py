"""Backends shipped with the core distribution: the local disk (default) and memory."""
