"""Ratio benchmarks for fleetbox_db: the library against the disk floor, never timed asserts.

``python -m benchmarks.store --help`` runs them; see that module's docstring.
"""
