"""The resources an agent offers: a name, a kind and a handler each.

Handlers may be plain functions or coroutine functions. Plain ones run in a worker thread
(asyncio's default executor), so a handler that blocks (a sensor read, a serial port) never
stalls the link; coroutine functions run on the agent's loop and must not block it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format, struct_pb2
from thingwire.agent.v1 import agent_pb2

Kind = agent_pb2.ResourceKind
#: A handler: no argument for output and no-parameter resources, the input value otherwise.
Handler = Callable[..., Any]


@dataclass(frozen=True)
class ResourceHandler:
    """One declared resource and the function that serves it."""

    name: str
    kind: agent_pb2.ResourceKind
    handler: Handler
    description: str = ""
    example: Any = None

    @property
    def takes_input(self) -> bool:
        return self.kind in (Kind.RESOURCE_KIND_INPUT, Kind.RESOURCE_KIND_INPUT_OUTPUT)

    @property
    def gives_output(self) -> bool:
        return self.kind in (Kind.RESOURCE_KIND_OUTPUT, Kind.RESOURCE_KIND_INPUT_OUTPUT)

    def declaration(self) -> agent_pb2.ResourceDeclaration:
        """The declaration the Hello carries."""
        declared = agent_pb2.ResourceDeclaration(
            name=self.name, kind=self.kind, description=self.description
        )
        if self.example is not None:
            declared.example.CopyFrom(to_value(self.example))
        return declared

    async def call(self, value: struct_pb2.Value | None) -> struct_pb2.Value | None:
        """Run the handler with the input (as plain Python) and return its output."""
        args = (from_value(value),) if self.takes_input else ()
        if inspect.iscoroutinefunction(self.handler):
            result = await self.handler(*args)
        else:
            result = await asyncio.to_thread(self.handler, *args)
            # A plain function that hands back an awaitable (a lambda around a coroutine
            # function, an object with an async __call__): its work is that awaitable.
            if inspect.isawaitable(result):
                result = await result
        return to_value(result) if self.gives_output else None


def to_value(data: Any) -> struct_pb2.Value:
    """A JSON-like Python value as a protobuf Value."""
    return json_format.ParseDict(data, struct_pb2.Value())


def from_value(value: struct_pb2.Value | None) -> Any:
    """A protobuf Value as plain Python (None for no value)."""
    if value is None or value.WhichOneof("kind") is None:
        return None
    return json_format.MessageToDict(value)
