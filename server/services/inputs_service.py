"""InputService: a Datacooee organisation's inputs (series), by organisation headers."""

from __future__ import annotations

import grpc
from thingwire.inputs.v1 import inputs_pb2, inputs_pb2_grpc

from server.auth.principal import require_organization
from server.state import AppState
from server.storage import orgs


class InputService(inputs_pb2_grpc.InputServiceServicer):
    """Implements thingwire.inputs.v1.InputService."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def ListInputs(
        self, request: inputs_pb2.ListInputsRequest, context: grpc.aio.ServicerContext
    ) -> inputs_pb2.ListInputsResponse:
        org = require_organization()
        rows, next_token = await self._state.database.run(
            lambda s: orgs.list_inputs(s, org.org_id, request.page_size, request.page_token)
        )
        return inputs_pb2.ListInputsResponse(
            inputs=[
                inputs_pb2.Input(id=r.id, name=r.name, measure_unit=r.measure_unit) for r in rows
            ],
            next_page_token=next_token,
        )
