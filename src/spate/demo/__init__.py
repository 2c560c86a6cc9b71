"""The pipeline behind ``spate demo``: synthetic access logs, parsing, statistics and a
5xx alert, small enough to read in one sitting."""
