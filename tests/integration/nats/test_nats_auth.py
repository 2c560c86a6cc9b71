"""NKey and credentials-file (JWT) authentication, end to end against servers that
require them.

The keys are made here with the ``nkeys`` package (what ``nsc`` does): an NKey user
for a server with an ``authorization`` block, and for a server in operator mode an
operator, a system account, an account allowed to use JetStream and a user whose JWT
and seed form a ``.creds`` file. Token and user/password authentication are in
``test_nats_admin_and_producer.py`` (and what happens without ``nkeys``), TLS in
``test_nats_tls.py``.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

import spate
from spate.errors import ConnectError
from spate.testing.nats_server import NatsServer

nkeys = pytest.importorskip("nkeys")

UNLIMITED = -1


def new_key(prefix: int) -> Any:
    """A fresh key pair of one role (user, account, operator)."""
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def seed_of(key: Any) -> str:
    seed: bytes = key.seed
    return seed.decode()


def public_of(key: Any) -> str:
    public: bytes = key.public_key
    return public.decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(issuer: Any, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT (``ed25519-nkey``) for ``subject``, signed by ``issuer``."""
    header = _b64(orjson.dumps({"typ": "JWT", "alg": "ed25519-nkey"}))
    claims = {
        "jti": uuid.uuid4().hex.upper(),
        "iat": int(time.time()),
        "iss": public_of(issuer),
        "sub": subject,
        "name": name,
        "nats": nats,
    }
    payload = _b64(orjson.dumps(claims))
    signature = issuer.sign(f"{header}.{payload}".encode())
    return f"{header}.{payload}.{_b64(signature)}"


def operator_mode(folder: Path) -> tuple[str, Path, Path]:
    """(server config, a valid .creds file, a .creds file of an unknown account)."""
    operator = new_key(nkeys.PREFIX_BYTE_OPERATOR)
    system, account, stranger = (new_key(nkeys.PREFIX_BYTE_ACCOUNT) for _ in range(3))
    # The account may use JetStream: storage, stream and consumer limits are set.
    names = ("subs", "data", "payload", "imports", "exports", "conn", "leaf", "mem_storage")
    limits = {name: UNLIMITED for name in (*names, "disk_storage", "streams", "consumer")}
    account_claims = {"type": "account", "version": 2}
    accounts = {
        public_of(system): jwt(operator, public_of(system), "SYS", account_claims),
        public_of(account): jwt(
            operator, public_of(account), "app", {**account_claims, "limits": limits}
        ),
    }
    preload = "\n".join(f"  {key}: {token}" for key, token in accounts.items())
    operator_jwt = jwt(operator, public_of(operator), "op", {"type": "operator", "version": 2})
    config = (
        f"operator: {operator_jwt}\nsystem_account: {public_of(system)}\n"
        f"resolver: MEMORY\nresolver_preload: {{\n{preload}\n}}\n"
    )
    paths = []
    for signer, name in ((account, "app"), (stranger, "stranger")):
        user = new_key(nkeys.PREFIX_BYTE_USER)
        # Unset user limits are 0: no subscription, so not even JetStream replies.
        claims = {"type": "user", "version": 2, "pub": {}, "sub": {}}
        claims.update({limit: UNLIMITED for limit in ("subs", "data", "payload")})
        token = jwt(signer, public_of(user), name, claims)
        path = folder / f"{name}.creds"
        path.write_text(
            f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed_of(user)}\n------END USER NKEY SEED------\n"
        )
        paths.append(path)
    return config, paths[0], paths[1]


async def test_nkey_user_from_a_seed_file_or_a_seed_string(tmp_path: Path) -> None:
    user, other = new_key(nkeys.PREFIX_BYTE_USER), new_key(nkeys.PREFIX_BYTE_USER)
    (tmp_path / "user.nk").write_text(seed_of(user) + "\n")
    (tmp_path / "other.nk").write_text(seed_of(other) + "\n")
    users = f'authorization {{ users = [ {{ nkey: "{public_of(user)}" }} ] }}'
    with NatsServer(extra_config=users) as server:
        async with spate.connect(f"{server.url}?nkey_seed={tmp_path / 'user.nk'}") as broker:
            await broker.create_topic("signed", 2)
            async with broker.producer() as producer:
                producer.send("signed", b"hello", key=b"k")
                await producer.flush()
        async with spate.connect(server.url, nkeys_seed_str=seed_of(user)) as broker:
            assert [t.name for t in await broker.list_topics()] == ["signed"]
        for refused in (f"{server.url}?nkey_seed={tmp_path / 'other.nk'}", server.url):
            with pytest.raises(ConnectError):
                async with spate.connect(refused, connect_timeout_s=1):
                    pass


async def test_credentials_file_of_a_jwt_user_in_operator_mode(tmp_path: Path) -> None:
    config, creds, stranger = operator_mode(tmp_path)
    with NatsServer(extra_config=config) as server:
        async with spate.connect(f"{server.url}?creds={creds}") as broker:
            await broker.create_topic("accounted", 2)
            async with broker.producer() as producer:
                producer.send("accounted", b"hello", key=b"k")
                await producer.flush()
            (row,) = [r for r in await broker.lag("g", ["accounted"]) if r.end_offset]
            assert row.end_offset == 1
        async with spate.connect(server.url, user_credentials=str(creds)) as broker:
            assert [t.name for t in await broker.list_topics()] == ["accounted"]
        for refused in (f"{server.url}?creds={stranger}", server.url):
            with pytest.raises(ConnectError):
                async with spate.connect(refused, connect_timeout_s=1):
                    pass


async def test_refused_credentials_fail_at_once_with_the_servers_reason() -> None:
    """Not an outage: the server answers "Authorization Violation" at once, so waiting
    for the connect timeout and guessing "wrong address?" would hide the reason."""
    users = 'authorization { users = [ { user: "app", password: "pw" } ] }'
    with NatsServer(extra_config=users) as server:
        address = f"127.0.0.1:{server.port}"
        for url in (f"nats://app:wrong@{address}", server.url):
            with pytest.raises(ConnectError) as info:
                async with spate.connect(url, connect_timeout_s=30):
                    pass
            message = str(info.value)
            assert "Authorization Violation" in message
            assert address in message
            assert "wrong" not in message  # the password is masked, no guessing either
