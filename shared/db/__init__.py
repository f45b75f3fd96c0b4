"""PostgreSQL plumbing: connection pool, migrations, transactional outbox and inbox."""

from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# What handlers receive: a pooled connection (a proxy) or, in tests, a plain one.
DbConnection: TypeAlias = asyncpg.Connection | PoolConnectionProxy
