"""InputDataService: Datacooee uploads and the eight fetch endpoints (docs/datacooee.md).

Thin: the parameters come from the REST query when the call came through the gateway (the
path the client sent, `x-envoy-original-path`) and from the typed fields otherwise; both
become one `Fetch` or `Stats` (server/datacooee/params.py), which storage answers in one
statement.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.api import httpbody_pb2
from thingwire.inputs.v1 import input_data_pb2 as pb
from thingwire.inputs.v1 import input_data_pb2_grpc

from server.auth.principal import require_organization
from server.datacooee import answers, params, upload
from server.errors import InvalidArgument
from server.request_origin import metadata_of
from server.rest_interceptor import ORIGINAL_PATH_KEY
from server.state import AppState
from server.storage import input_data
from server.storage.input_data import InputInfo


def _rest_query(context: grpc.aio.ServicerContext) -> dict[str, str] | None:
    """The REST query's parameters, or None for a call that did not come as REST."""
    path = metadata_of(context).get(ORIGINAL_PATH_KEY)
    return None if path is None else params.query_of_path(path)


class InputDataService(input_data_pb2_grpc.InputDataServiceServicer):
    """Implements thingwire.inputs.v1.InputDataService."""

    def __init__(self, state: AppState) -> None:
        self._state = state

    async def CreateInputData(
        self, request: pb.CreateInputDataRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        org = require_organization()
        point = upload.point_of_body(request.body.data, request.input_pk)
        stored = await self._state.database.run(
            lambda s: input_data.store_point(s, org.org_id, request.input_pk, point)
        )
        return httpbody_pb2.HttpBody(
            content_type=upload.CONTENT_TYPE, data=upload.document_of(stored)
        )

    # --- values ---------------------------------------------------------------------------

    def _fetch(
        self, request: Any, context: grpc.aio.ServicerContext, *, latest: bool, asset: bool
    ) -> params.Fetch:
        query = _rest_query(context)
        now = self._state.clock()
        if query is None:
            return params.fetch_of_request(request, latest=latest, now=now, required_ids=not asset)
        return params.fetch_of_query(query, latest=latest, now=now, required_ids=not asset)

    def _stats(
        self, request: Any, context: grpc.aio.ServicerContext, *, latest: bool, asset: bool
    ) -> params.Stats:
        query = _rest_query(context)
        now = self._state.clock()
        if query is None:
            return params.stats_of_request(request, latest=latest, now=now, required_ids=not asset)
        return params.stats_of_query(query, latest=latest, now=now, required_ids=not asset)

    @staticmethod
    def _asset_id(request: Any, context: grpc.aio.ServicerContext) -> int:
        query = _rest_query(context)
        if query is None:
            if request.asset_pk <= 0:
                raise InvalidArgument("asset_pk must be a positive integer")
            return int(request.asset_pk)
        return params.asset_id_of(query)

    async def _values(self, org_id: str, fetch: params.Fetch) -> list[dict[str, Any]]:
        def read(s: Any) -> list[dict[str, Any]]:
            inputs = input_data.inputs_of(s, org_id, fetch.input_ids)
            return self._read_values(s, inputs, fetch)

        return await self._state.database.run(read)

    @staticmethod
    def _read_values(s: Any, inputs: list[InputInfo], fetch: params.Fetch) -> list[dict[str, Any]]:
        params.check_points(len(inputs), fetch.limit)
        points = input_data.read_points(
            s,
            [i.id for i in inputs],
            fetch.window,
            limit=fetch.limit,
            by_value=fetch.by_value,
            descending=fetch.descending,
        )
        return answers.values_list(inputs, points, fetch)

    @staticmethod
    def _read_stats(s: Any, inputs: list[InputInfo], stats: params.Stats) -> list[dict[str, Any]]:
        figures = input_data.statistics(
            s, [i.id for i in inputs], stats.window, stats.aggregates, limit=stats.limit
        )
        return answers.statistics_list(inputs, figures)

    async def _by_inputs_values(self, request: Any, context: Any, latest: bool) -> Any:
        org = require_organization()
        fetch = self._fetch(request, context, latest=latest, asset=False)
        return answers.json_body(await self._values(org.org_id, fetch))

    async def _by_inputs_stats(self, request: Any, context: Any, latest: bool) -> Any:
        org = require_organization()
        stats = self._stats(request, context, latest=latest, asset=False)

        def read(s: Any) -> list[dict[str, Any]]:
            return self._read_stats(s, input_data.inputs_of(s, org.org_id, stats.input_ids), stats)

        return answers.json_body(await self._state.database.run(read))

    async def _by_asset(self, request: Any, context: Any, latest: bool, stats: bool) -> Any:
        org = require_organization()
        asset_id = self._asset_id(request, context)
        what: params.Fetch | params.Stats = (
            self._stats(request, context, latest=latest, asset=True)
            if stats
            else self._fetch(request, context, latest=latest, asset=True)
        )

        def read(s: Any) -> tuple[int, str, list[dict[str, Any]]]:
            found, name, inputs = input_data.asset_inputs_of(
                s, org.org_id, asset_id, what.input_ids
            )
            if len(inputs) > params.MAX_INPUTS:
                raise InvalidArgument(
                    f"the asset has more than {params.MAX_INPUTS} inputs: name some in input_ids"
                )
            if isinstance(what, params.Stats):
                return found, name, self._read_stats(s, inputs, what)
            return found, name, self._read_values(s, inputs, what)

        found, name, entries = await self._state.database.run(read)
        return answers.asset_body(found, name, entries)

    async def GetInputDataByInputs(
        self, request: pb.GetInputDataByInputsRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        return await self._by_inputs_values(request, context, latest=False)

    async def GetLatestInputDataByInputs(
        self, request: pb.GetLatestInputDataByInputsRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        return await self._by_inputs_values(request, context, latest=True)

    async def GetStatisticsInputDataByInputs(
        self, request: pb.GetStatisticsInputDataByInputsRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        return await self._by_inputs_stats(request, context, latest=False)

    async def GetLatestStatisticsInputDataByInputs(
        self,
        request: pb.GetLatestStatisticsInputDataByInputsRequest,
        context: grpc.aio.ServicerContext,
    ) -> httpbody_pb2.HttpBody:
        return await self._by_inputs_stats(request, context, latest=True)

    async def GetInputDataByAsset(
        self, request: pb.GetInputDataByAssetRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        return await self._by_asset(request, context, latest=False, stats=False)

    async def GetLatestInputDataByAsset(
        self, request: pb.GetLatestInputDataByAssetRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        return await self._by_asset(request, context, latest=True, stats=False)

    async def GetStatisticsInputDataByAsset(
        self, request: pb.GetStatisticsInputDataByAssetRequest, context: grpc.aio.ServicerContext
    ) -> httpbody_pb2.HttpBody:
        return await self._by_asset(request, context, latest=False, stats=True)

    async def GetLatestStatisticsInputDataByAsset(
        self,
        request: pb.GetLatestStatisticsInputDataByAssetRequest,
        context: grpc.aio.ServicerContext,
    ) -> httpbody_pb2.HttpBody:
        return await self._by_asset(request, context, latest=True, stats=True)


__all__ = ["InputDataService"]
