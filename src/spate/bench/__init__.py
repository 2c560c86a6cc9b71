"""Measurement for ``spate bench``: latency percentiles, an open-loop send schedule and
interval reports, kept apart from the CLI and from any broker so they are tested
without one and without sleeping."""
