"""The Go tool's rules, pure: paths and names, config.json bytes, Go's JSON and time text,
IPv4/MAC math and the conflict rule, and what a write accepts.

No I/O, no state: every function here can be tested on values alone, and both the disk
and the index parts build on it. Imports nothing of ours but errors and records.
"""
