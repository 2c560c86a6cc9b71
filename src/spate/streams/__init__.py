"""The Stream DSL: operators, event-time windows and their aggregations.

``from spate.streams import tumbling, hopping, sliding, session, agg``
"""

from spate.streams import aggregations as agg
from spate.streams.windows import hopping, session, sliding, tumbling

__all__ = ["agg", "hopping", "session", "sliding", "tumbling"]
