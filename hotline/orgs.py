"""The org-unit tree: which units sit below which, read once and kept in memory.

Every staff request needs the user's unit plus all units below it (its *scope*), so
the tree (a few dozen rows) is cached per database. Code that changes org units calls
:func:`invalidate`; the cache also expires after a minute in case a CLI or another
process edited the table.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hotline.store.models import OrgUnit

ROOT_UNIT = "default"
_TTL_SECONDS = 60.0


class OrgTree:
    """An immutable snapshot of ``org_unit``: parents, children, subtrees, ancestors."""

    __slots__ = ("_children", "parents")

    def __init__(self, parents: Mapping[str, str | None]) -> None:
        self.parents: dict[str, str | None] = dict(parents)
        self._children: dict[str, list[str]] = {}
        for unit, parent in self.parents.items():
            if parent is not None:
                self._children.setdefault(parent, []).append(unit)

    def __contains__(self, unit_id: object) -> bool:
        return unit_id in self.parents

    def children(self, unit_id: str) -> tuple[str, ...]:
        return tuple(self._children.get(unit_id, ()))

    def subtree(self, unit_id: str) -> frozenset[str]:
        """The unit and every unit below it; empty when the unit does not exist."""
        if unit_id not in self.parents:
            return frozenset()
        seen = {unit_id}
        stack = [unit_id]
        while stack:
            for child in self._children.get(stack.pop(), ()):
                if child not in seen:  # guards against a cycle someone wrote by hand
                    seen.add(child)
                    stack.append(child)
        return frozenset(seen)

    def ancestors(self, unit_id: str) -> tuple[str, ...]:
        """Parent first, up to the root; the unit itself is not included."""
        out: list[str] = []
        parent = self.parents.get(unit_id)
        while parent is not None and parent not in out and parent != unit_id:
            out.append(parent)
            parent = self.parents.get(parent)
        return tuple(out)


# Keyed by the app's sessionmaker, so two apps on two databases (tests) never share.
_cache: weakref.WeakKeyDictionary[async_sessionmaker[Any], tuple[float, OrgTree]] = (
    weakref.WeakKeyDictionary()
)
_generation = 0


async def load_tree(sessions: async_sessionmaker[Any]) -> OrgTree:
    """The current tree, from the cache when it is fresh."""
    cached = _cache.get(sessions)
    if cached is not None and time.monotonic() - cached[0] < _TTL_SECONDS:
        return cached[1]
    generation = _generation
    async with sessions() as session:
        tree = await read_tree(session)
    if generation == _generation:  # not invalidated while we were reading
        _cache[sessions] = (time.monotonic(), tree)
    return tree


async def read_tree(session: AsyncSession) -> OrgTree:
    """The tree as this transaction sees it (no cache): for checks before a change."""
    rows = (await session.execute(select(OrgUnit.id, OrgUnit.parent_id))).all()
    return OrgTree({unit_id: parent_id for unit_id, parent_id in rows})


async def subtree(sessions: async_sessionmaker[Any], unit_id: str) -> frozenset[str]:
    """``unit_id`` and every unit below it."""
    return (await load_tree(sessions)).subtree(unit_id)


def invalidate(sessions: async_sessionmaker[Any] | None = None) -> None:
    """Forget the cached tree (of one database, or all); call after any org-unit change."""
    global _generation
    _generation += 1
    if sessions is None:
        _cache.clear()
    else:
        _cache.pop(sessions, None)
