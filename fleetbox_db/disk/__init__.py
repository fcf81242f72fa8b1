"""The canonical tree on disk: the scan, reads, atomic writes, removal, member locks, the
sweep of killed writes' temp files, process liveness, and the answers disk alone can give.

Never imports the index: everything here is true without it.
"""
