"""Aggregations of a window's records: count, sum, min, max, mean, first, last,
collect, and custom reducers (DESIGN §8).

Each is an :class:`Aggregator`: an accumulator that starts as ``initializer()``,
takes one record at a time (``add(acc, value, event_time_ms)`` returns the new
accumulator), combines with another window's (``merge``, for session windows that
merge) and turns into the output (``result``). Accumulators live in the partition's
store between batches, so they are plain data (numbers, lists, tuples, dicts).

A window operator calls one function per record for all of its aggregators, compiled
once per stream by :func:`updater`: the built-ins are inlined there (``count`` is
``acc[1] += 1``), so W2's count-and-sum costs one call per record, not one per
aggregator.

Usage::

    from spate.streams import agg
    stream.window(tumbling(seconds=60)).aggregate(
        orders=agg.count(), revenue=agg.sum("amount"), biggest=agg.max(lambda o: o["amount"]),
        basket=agg.reducer(initializer=set_list, add=add_item, merge=union),
    )
"""

from __future__ import annotations

import linecache
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from spate.errors import ConfigError

Field = Callable[[Any], Any] | str
"""What an aggregation reads from a value: a function of it, or the name of one of its
fields (``"amount"`` is ``value["amount"]``, read without a call per record); the value
itself when omitted."""


@dataclass(frozen=True, slots=True)
class Aggregator:
    """One aggregation: how its accumulator starts, grows, merges and ends."""

    kind: str
    initializer: Callable[[], Any]
    add: Callable[[Any, Any, int], Any]
    """``add(acc, value, event_time_ms)`` → the new accumulator."""
    merge: Callable[[Any, Any], Any] | None = None
    """``merge(earlier, later)`` → one accumulator (session windows); None: cannot merge."""
    result: Callable[[Any], Any] | None = None
    """The output of an accumulator; None: the accumulator itself."""
    fn: Callable[[Any], Any] | None = None
    """What is read from a value (None: the value itself)."""
    field: str | None = None
    """The value's field ``fn`` reads, when it was given by name: compiled updaters
    read it with a subscript instead of calling ``fn``."""
    inline: str | None = None
    """The add as a statement on ``{acc}`` and ``{x}`` (the value read), for the compiled
    updater; None: a call to ``add``."""
    mutable: bool = False
    """The accumulator is changed in place: each window needs its own from
    ``initializer()`` (the others share one fresh value)."""

    @property
    def user_code(self) -> bool:
        """It calls a function the user wrote: a reducer's, or ``fn`` not given by name."""
        return self.kind == "reducer" or (self.fn is not None and self.field is None)


def _field(kind: str, fn: Field | None) -> Callable[[Any], Any] | None:
    if isinstance(fn, str):
        return operator.itemgetter(fn)
    if fn is not None and not callable(fn):
        raise ConfigError(
            f"agg.{kind}({fn!r}) needs a function of the value, a field name, or nothing"
        )
    return fn


def _named(fn: Field | None) -> str | None:
    return fn if isinstance(fn, str) else None


def _pick(fn: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    return (lambda value: value) if fn is None else fn


def count() -> Aggregator:
    """How many records the window holds."""
    return Aggregator(
        "count", lambda: 0, lambda acc, value, ts: acc + 1, lambda a, b: a + b, inline="{acc} += 1"
    )


def sum(fn: Field | None = None) -> Aggregator:
    """The sum of ``fn(value)`` (of the values themselves without ``fn``)."""
    read = _field("sum", fn)
    get = _pick(read)
    return Aggregator(
        "sum",
        lambda: 0,
        lambda acc, value, ts: acc + get(value),
        lambda a, b: a + b,
        fn=read,
        field=_named(fn),
        inline="{acc} += {x}",
    )


def _extreme(kind: str, fn: Field | None, better: Callable[[Any, Any], bool]) -> Aggregator:
    read = _field(kind, fn)
    get = _pick(read)

    def add(acc: Any, value: Any, ts: int) -> Any:
        x = get(value)
        return x if acc is None or better(x, acc) else acc

    def merge(a: Any, b: Any) -> Any:
        return b if a is None or (b is not None and better(b, a)) else a

    op = "<" if kind == "min" else ">"
    inline = f"x = {{x}}\nif {{acc}} is None or x {op} {{acc}}:\n    {{acc}} = x"
    return Aggregator(kind, lambda: None, add, merge, fn=read, field=_named(fn), inline=inline)


def min(fn: Field | None = None) -> Aggregator:
    """The smallest ``fn(value)``."""
    return _extreme("min", fn, lambda x, acc: x < acc)


def max(fn: Field | None = None) -> Aggregator:
    """The largest ``fn(value)``."""
    return _extreme("max", fn, lambda x, acc: x > acc)


def mean(fn: Field | None = None) -> Aggregator:
    """The arithmetic mean of ``fn(value)`` (a float)."""
    read = _field("mean", fn)
    get = _pick(read)
    return Aggregator(
        "mean",
        lambda: (0, 0),
        lambda acc, value, ts: (acc[0] + get(value), acc[1] + 1),
        lambda a, b: (a[0] + b[0], a[1] + b[1]),
        lambda acc: acc[0] / acc[1] if acc[1] else None,
        fn=read,
        field=_named(fn),
    )


def _at_time(kind: str, fn: Field | None, wins: Callable[[int, int], bool]) -> Aggregator:
    """``fn(value)`` of one record, kept as (event time, value): a record replaces the
    kept one when ``wins(its time, kept time)``; merging keeps the later window's
    when it wins against the earlier one's."""
    read = _field(kind, fn)
    get = _pick(read)
    return Aggregator(
        kind,
        lambda: None,
        lambda acc, value, ts: (ts, get(value)) if acc is None or wins(ts, acc[0]) else acc,
        lambda a, b: b if a is None or (b is not None and wins(b[0], a[0])) else a,
        lambda acc: None if acc is None else acc[1],
        fn=read,
        field=_named(fn),
    )


def first(fn: Field | None = None) -> Aggregator:
    """``fn(value)`` of the record with the earliest event time (the first to arrive
    among equal ones)."""
    return _at_time("first", fn, lambda ts, kept: ts < kept)


def last(fn: Field | None = None) -> Aggregator:
    """``fn(value)`` of the record with the latest event time (the last to arrive
    among equal ones)."""
    return _at_time("last", fn, lambda ts, kept: ts >= kept)


def collect(fn: Field | None = None) -> Aggregator:
    """Every ``fn(value)``, in arrival order (merged sessions: the earlier one's first).
    They are kept in the store until the window closes: plain data only."""
    read = _field("collect", fn)
    get = _pick(read)

    def add(acc: list[Any], value: Any, ts: int) -> list[Any]:
        acc.append(get(value))
        return acc

    return Aggregator(
        "collect",
        list,
        add,
        lambda a, b: a + b,
        fn=read,
        field=_named(fn),
        inline="{acc}.append({x})",
        mutable=True,
    )


def reducer(
    *,
    initializer: Callable[[], Any],
    add: Callable[[Any, Any], Any],
    merge: Callable[[Any, Any], Any] | None = None,
    result: Callable[[Any], Any] | None = None,
) -> Aggregator:
    """A custom aggregation: ``initializer()`` starts an accumulator, ``add(acc, value)``
    returns it with one more value, ``merge(a, b)`` (needed by session windows) combines
    two, ``result(acc)`` (optional) is what the output shows. Accumulators are kept in
    the store: plain data."""
    for name, fn in (("initializer", initializer), ("add", add)):
        if not callable(fn):
            raise ConfigError(f"agg.reducer({name}={fn!r}) needs a function")
    for name, optional in (("merge", merge), ("result", result)):
        if optional is not None and not callable(optional):
            raise ConfigError(f"agg.reducer({name}={optional!r}) needs a function or None")
    return Aggregator(
        "reducer",
        initializer,
        lambda acc, value, ts: add(acc, value),
        merge,
        result,
        mutable=True,
    )


# --- compiled: one function per record for all of a window's aggregators --------------

Update = Callable[[list[Any], Any, int], None]
"""``update(state, value, event_time_ms)``: add a record to a window's state, whose
slot ``i + 1`` is aggregator ``i``'s accumulator (slot 0 is the window's end)."""


def check(aggregations: Mapping[str, Any]) -> dict[str, Aggregator]:
    """The ``aggregate(**aggregations)`` arguments, checked."""
    if not aggregations:
        raise ConfigError(
            ".aggregate() needs at least one aggregation, e.g. .aggregate(n=agg.count())"
        )
    for name, found in aggregations.items():
        if not isinstance(found, Aggregator):
            raise ConfigError(
                f".aggregate({name}={found!r}): use an aggregation from spate.streams.agg "
                "(count(), sum(fn), ..., reducer(initializer=, add=))"
            )
        if name in ("key", "start", "end"):
            raise ConfigError(
                f".aggregate({name}=...): {name!r} is a field of every window's output; "
                "name the aggregation otherwise"
            )
    return dict(aggregations)


def update_code(aggregators: tuple[Aggregator, ...]) -> tuple[list[str], dict[str, Any]]:
    """The statements that add ``value`` (event time ``ts``) to ``state``, and the names
    they use: the body of :func:`updater`, and of window loops that inline it."""
    lines: list[str] = []
    namespace: dict[str, Any] = {}
    for i, aggregator in enumerate(aggregators):
        acc = f"state[{i + 1}]"
        if aggregator.inline is None:
            namespace[f"add{i}"] = aggregator.add
            body = f"{acc} = add{i}({acc}, value, ts)"
        else:
            x = "value"
            if aggregator.field is not None:
                x = f"value[{aggregator.field!r}]"
            elif aggregator.fn is not None:
                namespace[f"get{i}"] = aggregator.fn
                x = f"get{i}(value)"
            body = aggregator.inline.format(acc=acc, x=x)
        lines.extend(body.splitlines())
    return lines, namespace


def compiled(name: str, source: str, namespace: dict[str, Any]) -> Any:
    """``name`` defined by ``source`` in ``namespace`` (its lines kept for tracebacks)."""
    filename = f"<spate {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def updater(aggregators: tuple[Aggregator, ...]) -> Update:
    """The per-record function for ``aggregators``, built once per stream."""
    lines, namespace = update_code(aggregators)
    body = "".join(f"    {line}\n" for line in lines)
    update: Update = compiled("update", f"def update(state, value, ts):\n{body}", namespace)
    return update


def initial(aggregators: tuple[Aggregator, ...]) -> Callable[[int], list[Any]]:
    """``fresh(end)``: a new window's state — its end, then each aggregator's fresh
    accumulator (built once and copied when none of them is changed in place)."""
    if any(a.mutable for a in aggregators):
        initializers = [a.initializer for a in aggregators]
        return lambda end: [end, *(make() for make in initializers)]
    template = [a.initializer() for a in aggregators]
    return lambda end: [end, *template]


def merged(aggregators: tuple[Aggregator, ...], a: list[Any], b: list[Any]) -> list[Any]:
    """Two windows' states as one (``a`` the earlier); the end is the later of both."""
    state = [a[0] if a[0] > b[0] else b[0]]
    for i, aggregator in enumerate(aggregators, 1):
        assert aggregator.merge is not None  # checked when the stream was built
        state.append(aggregator.merge(a[i], b[i]))
    return state


Output = Callable[[Any, int, int, list[Any]], dict[str, Any]]
"""``output(key, start, end, state)``: a window's output dict."""


def output(names: tuple[str, ...], aggregators: tuple[Aggregator, ...]) -> Output:
    """The function that builds a window's output, compiled once per stream (a dict
    display, no loop per window)."""
    namespace: dict[str, Any] = {}
    fields = ['"key": key', '"start": start', '"end": end']
    for i, (name, aggregator) in enumerate(zip(names, aggregators, strict=True)):
        value = f"state[{i + 1}]"
        if aggregator.result is not None:
            namespace[f"result{i}"] = aggregator.result
            value = f"result{i}({value})"
        fields.append(f"{name!r}: {value}")
    source = f"def output(key, start, end, state):\n    return {{{', '.join(fields)}}}\n"
    built: Output = compiled("output", source, namespace)
    return built
