"""Fixtures for the sync tests: the shared Redis with a unique key prefix per test, and private
redis-server processes for the tests that stop or kill Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from tests.sync.helpers import SHARED_REDIS_URL, RedisServer, need_binary


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefix() -> str:
    return f"test-sync-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_url() -> str:
    need_binary("redis-server")
    return SHARED_REDIS_URL


@pytest.fixture
async def rclient(redis_url: str, prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the shared Redis; every key under this test's prefix is deleted afterwards."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {redis_url} is not running: {exc}")
    try:
        yield client
    finally:
        keys = [k async for k in client.scan_iter(match=f"{{{prefix}:sync}}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()
