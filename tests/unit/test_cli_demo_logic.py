"""The demo's generator, parser, statistics and alert rule, with no broker."""

from __future__ import annotations

from spate.demo.analysis import ErrorRateAlert, PathStats, Request, Stats, parse_line
from spate.demo.logs import AccessLogGenerator, Incident

LINE = '198.51.100.23 - - [2026-11-27T01:02:03.123Z] "GET /api/orders HTTP/1.1" 200 512 rt=0.023'


def _request(ts_ms: int, status: int, path: str = "/", latency_ms: float = 10.0) -> Request:
    return Request(
        timestamp_ms=ts_ms,
        client="c",
        method="GET",
        path=path,
        status=status,
        size=1,
        latency_ms=latency_ms,
    )


def test_parse_line_reads_every_field() -> None:
    request = parse_line(LINE)
    assert request is not None
    assert request.client == "198.51.100.23"
    assert (request.method, request.path, request.status, request.size) == (
        "GET",
        "/api/orders",
        200,
        512,
    )
    assert abs(request.latency_ms - 23.0) < 1e-9
    assert request.timestamp_ms == 1795741323123


def test_parse_line_rejects_malformed_lines() -> None:
    for bad in (
        "",
        LINE[:40],
        LINE.replace(" rt=", " rt=n/a "),
        LINE.replace('"GET ', '"'),
        LINE.replace("[2026-11-27T01:02:03.123Z]", "[yesterday]"),
        "\\x16\\x03\\x01 client sent a TLS handshake to the plain-text port",
    ):
        assert parse_line(bad) is None, bad


def test_generator_lines_parse_except_a_small_malformed_share() -> None:
    generator = AccessLogGenerator(Incident(start_s=100, end_s=200), seed=7)
    lines = generator.lines(5000, elapsed_s=1.0, timestamp_ms=1_700_000_000_000)
    parsed = [parse_line(line) for line in lines]
    malformed = sum(1 for p in parsed if p is None)
    assert 40 <= malformed <= 200  # about 2 %
    requests = [p for p in parsed if p is not None]
    errors = sum(1 for r in requests if r.status >= 500)
    assert errors / len(requests) < 0.05
    assert {r.path for r in requests} >= {"/", "/api/orders", "/checkout"}


def test_generator_incident_raises_the_5xx_share() -> None:
    generator = AccessLogGenerator(Incident(start_s=1, end_s=2), seed=3)
    lines = generator.lines(2000, elapsed_s=1.5, timestamp_ms=1_700_000_000_000)
    requests = [r for r in map(parse_line, lines) if r is not None]
    share = sum(1 for r in requests if r.status >= 500) / len(requests)
    assert 0.3 < share < 0.5


def test_incident_fits_inside_every_run() -> None:
    for duration in (1.0, 3.0, 20.0, 600.0):
        incident = Incident.within(duration)
        assert 0 < incident.start_s < incident.end_s <= duration
    assert Incident.within(20.0) == Incident(start_s=7.0, end_s=12.0)


def test_same_seed_same_lines() -> None:
    def make() -> list[str]:
        return AccessLogGenerator(Incident.within(10), seed=42).lines(
            50, elapsed_s=0.0, timestamp_ms=0
        )

    assert make() == make()


def test_stats_count_and_drop_malformed_lines() -> None:
    stats = Stats()
    assert stats.parse("garbage") == []
    (request,) = stats.parse(LINE)
    stats.observe(request)
    stats.observe(_request(0, 503, "/api/orders", 50.0))
    assert (stats.lines, stats.malformed, stats.requests) == (2, 1, 2)
    assert stats.by_status == {200: 1, 503: 1}
    assert stats.by_path["/api/orders"].count == 2
    assert stats.share_5xx == 0.5


def test_path_stats_average_and_p95() -> None:
    path = PathStats()
    for latency in range(1, 101):
        path.add(float(latency))
    assert path.avg_ms == 50.5
    assert path.p95_ms == 96.0
    assert PathStats().p95_ms == 0.0


def test_alert_fires_once_and_resolves() -> None:
    alert = ErrorRateAlert(window_s=1.0, threshold=0.2, min_requests=10)
    fired: list[dict[str, object]] = []
    t = 0
    for i in range(100):  # healthy: 5 % errors
        t += 10
        fired += alert.observe(_request(t, 500 if i % 20 == 0 else 200))
    assert fired == []
    for i in range(100):  # outage: 50 % errors
        t += 10
        fired += alert.observe(_request(t, 500 if i % 2 else 200))
    assert [a["state"] for a in fired] == ["firing"]
    assert float(str(fired[0]["share_5xx"])) >= 0.2
    for _ in range(200):  # recovery
        t += 10
        fired += alert.observe(_request(t, 200))
    assert [a["state"] for a in fired] == ["firing", "resolved"]


def test_alert_needs_enough_requests() -> None:
    alert = ErrorRateAlert(window_s=1.0, threshold=0.2, min_requests=10)
    assert [alert.observe(_request(i, 500)) for i in range(9)] == [[]] * 9
    assert alert.observe(_request(9, 500))[0]["state"] == "firing"
