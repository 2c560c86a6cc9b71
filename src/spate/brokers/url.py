"""Broker URLs: ``scheme://[user[:password]@]host[:port][,host[:port]…][/path][?opt=val&…]``.

Parsing is strict and every error names the part that is wrong and how to fix it,
because a typo in a URL is the most common first mistake.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from spate.brokers import schemes
from spate.errors import ConfigError

_USERINFO_SECRET = re.compile(r"(://[^:/@]*:)[^@]*@")


@dataclass(frozen=True, kw_only=True, slots=True)
class BrokerURL:
    """A parsed broker URL. ``hosts`` keeps the order given; ports may be None."""

    raw: str
    scheme: str
    hosts: tuple[tuple[str, int | None], ...] = ()
    username: str | None = None
    password: str | None = None
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)

    def host_list(self, default_port: int) -> list[tuple[str, int]]:
        """Hosts with ``default_port`` filled in where none was given."""
        return [(host, default_port if port is None else port) for host, port in self.hosts]

    @property
    def redacted(self) -> str:
        """The URL with any password replaced, safe for logs and errors."""
        if self.password is None:
            return self.raw
        return _USERINFO_SECRET.sub(r"\1***@", self.raw, count=1)


def _fail(raw: str, part: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"broker URL {raw!r}: {part} {problem}; {fix}")


def _parse_host(raw: str, item: str) -> tuple[str, int | None]:
    if not item:
        raise _fail(raw, "host list", "has an empty entry", "write host:port[,host:port]")
    if item.startswith("["):
        end = item.find("]")
        if end < 0:
            raise _fail(raw, f"host {item!r}", "has no closing ']'", "write [::1]:port")
        host, rest = item[1:end], item[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise _fail(raw, f"host {item!r}", "has text after ']'", "write [::1]:port")
    else:
        host, sep, port_text_or_empty = item.partition(":")
        port_text = port_text_or_empty if sep else None
    if not host:
        raise _fail(raw, f"host {item!r}", "is empty", "write host:port, e.g. localhost:9092")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _fail(raw, f"port {port_text!r}", "is not a number from 1 to 65535", "fix the port")
    return host, int(port_text)


def parse_broker_url(raw: str) -> BrokerURL:
    """Parse and validate a broker URL; raises ConfigError naming the bad part."""
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(
            "broker URL is empty; give one such as local://.spate, memory://, "
            "kafka://localhost:9092, nats://localhost:4222 or redis://localhost:6379"
        )
    raw = raw.strip()
    scheme, sep, rest = raw.partition("://")
    if not sep:
        raise _fail(raw, "scheme", "is missing", "start the URL with e.g. kafka:// or local://")
    scheme = scheme.lower()
    try:
        takes_path = schemes.find(scheme).takes_path
    except ConfigError as exc:
        raise ConfigError(f"broker URL {raw!r}: {exc}") from None
    rest, _, query_text = rest.partition("?")
    try:
        query = dict(parse_qsl(query_text, keep_blank_values=True, strict_parsing=bool(query_text)))
    except ValueError as exc:
        raise _fail(raw, "query", f"is malformed ({exc})", "write ?name=value&name=value") from exc
    if takes_path:
        path = unquote(rest)
        if scheme == "local" and not path.strip("/"):
            raise _fail(
                raw,
                "path",
                "is empty (or the file system root)",
                "name the broker directory, e.g. local://.spate or local:///abs/path",
            )
        return BrokerURL(raw=raw, scheme=scheme, path=path, query=query)
    authority, slash, path = rest.partition("/")
    username = password = None
    if "@" in authority:
        userinfo, _, authority = authority.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    if not authority:
        raise _fail(raw, "host", "is missing", "write host:port, e.g. localhost:9092")
    hosts = tuple(_parse_host(raw, item.strip()) for item in authority.split(","))
    return BrokerURL(
        raw=raw,
        scheme=scheme,
        hosts=hosts,
        username=username,
        password=password,
        path=unquote(path) if slash else "",
        query=query,
    )
