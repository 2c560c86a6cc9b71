"""``spate.tracing``'s header helpers, the tracing settings, and tracing off."""

from __future__ import annotations

import sys

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from spate.app import App
from spate.config import Settings, load_settings
from spate.errors import ConfigError
from spate.observability.tracing import traced
from spate.tracing import extract, inject

CONTEXT = SpanContext(
    trace_id=0x0AF7651916CD43DD8448EB211C80319C,
    span_id=0xB7AD6B7169203331,
    is_remote=False,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
)
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_inject_without_a_current_span_leaves_the_headers_alone() -> None:
    assert inject((("a", b"1"),)) == (("a", b"1"),)


def test_inject_adds_the_current_span_and_replaces_an_old_traceparent() -> None:
    with trace.use_span(NonRecordingSpan(CONTEXT)):
        headers = inject((("a", b"1"), ("traceparent", b"00-old-old-01")))
    assert headers == (("a", b"1"), ("traceparent", TRACEPARENT))


def test_extract_reads_back_what_inject_wrote() -> None:
    context = extract((("traceparent", TRACEPARENT),))
    assert context is not None
    got = trace.get_current_span(context).get_span_context()
    assert (got.trace_id, got.span_id, got.is_remote) == (CONTEXT.trace_id, CONTEXT.span_id, True)
    assert extract((("a", b"1"),)) is None


def test_tracing_settings_from_the_environment() -> None:
    settings = load_settings(environ={"SPATE_TRACING": "yes", "SPATE_TRACING_SAMPLE_RATIO": "0.5"})
    assert (settings.tracing, settings.tracing_sample_ratio) == (True, 0.5)
    assert load_settings(environ={"SPATE_TRACING": "off"}).tracing is False
    with pytest.raises(ConfigError, match="SPATE_TRACING='maybe'"):
        load_settings(environ={"SPATE_TRACING": "maybe"})


@pytest.mark.parametrize("ratio", [-0.1, 1.5, "all", True])
def test_a_bad_sample_ratio_names_the_setting(ratio: object) -> None:
    with pytest.raises(ConfigError, match=r"tracing_sample_ratio=.* must be a number from 0"):
        Settings(tracing_sample_ratio=ratio)  # type: ignore[arg-type]


async def _process(records: object) -> None:
    pass


def test_tracing_off_leaves_the_batch_loop_as_it_is() -> None:
    app = App("t", broker="memory://")
    app.handler(app.topic("in"), group="g")(lambda v: v)
    (processor,) = app.processors
    assert traced(_process, app.settings, "t", processor.stream) is _process


def test_tracing_on_without_opentelemetry_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = App("t", broker="memory://", tracing=True)
    app.handler(app.topic("in"), group="g")(lambda v: v)
    (processor,) = app.processors
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigError, match=r"pip install 'spate-streams\[tracing\]'"):
        traced(_process, app.settings, "t", processor.stream)
