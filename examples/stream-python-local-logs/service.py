"""Route application log lines by level: errors and warnings each get their own topic."""

from spate import App

app = App("log-router")
raw = app.topic("app-logs", partitions=2, serde="str")
errors = app.topic("app-errors")
warnings = app.topic("app-warnings")


def parse(line: str) -> list[dict[str, str]]:
    """'<time> <LEVEL> <service> <message>' as a dict; a malformed line is dropped."""
    parts = line.split(" ", 3)
    if len(parts) < 4:
        return []
    time, level, service, message = parts
    return [{"time": time, "level": level, "service": service, "message": message}]


(
    app.stream(raw, group="log-router")
    .flat_map(parse)
    .key_by(lambda event: event["service"])
    .route(
        (lambda event: event["level"] == "ERROR", errors),
        (lambda event: event["level"] == "WARN", warnings),
    )
)

if __name__ == "__main__":
    app.run()
