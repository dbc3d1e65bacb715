"""Shared fixtures of the core tests."""
