"""Nodes on one fresh channel of python-can's virtual bus, for the vehicle tests: each a
bus with its asyncio Notifier (can-isotp stacks hang on it), shut down in that order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import can


@dataclass(frozen=True)
class Node:
    bus: can.BusABC
    notifier: can.Notifier


@asynccontextmanager
async def virtual_nodes(count: int, prefix: str = "vehicle") -> AsyncIterator[list[Node]]:
    """`count` nodes that hear each other (and no other test's). Stop what runs on them
    (simulators, clients) inside the block: their stacks need the notifiers."""
    channel = f"{prefix}-{uuid.uuid4().hex}"
    loop = asyncio.get_running_loop()
    nodes: list[Node] = []
    try:
        for _ in range(count):
            bus = can.Bus(interface="virtual", channel=channel)
            nodes.append(Node(bus, can.Notifier(bus, [], loop=loop)))
        yield nodes
    finally:
        for node in nodes:
            node.notifier.stop()
        for node in nodes:
            node.bus.shutdown()
