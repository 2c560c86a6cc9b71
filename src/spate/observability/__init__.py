"""What a running App shows of itself (DESIGN §9): Prometheus metrics, lag, health.

Everything here reads :class:`~spate.runtime.stats.ProcessorStats` when it is asked
(a scrape, a ``/status`` request): the batch loop never calls into this package.
"""
