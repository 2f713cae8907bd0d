"""InputService: organisation headers authenticate, and organisations see only their inputs."""

from __future__ import annotations

import grpc
import pytest
from thingwire.inputs.v1 import inputs_pb2

from server.storage import orgs
from tests.server.conftest import ServerUnderTest


def org_headers(org_id: str, key: str) -> tuple[tuple[str, str], ...]:
    return (("organization-id", org_id), ("organization-api-key", key))


def test_an_organisation_lists_only_its_inputs(grpc_server: ServerUnderTest) -> None:
    with grpc_server.database.session() as s:
        acme, acme_key = orgs.create_org(s, "acme")
        other, _ = orgs.create_org(s, "other")
        orgs.create_input(s, acme.id, "temperature", "C")
        orgs.create_input(s, other.id, "pressure", "hPa")
        acme_id = acme.id
    answer = grpc_server.inputs.ListInputs(
        inputs_pb2.ListInputsRequest(), metadata=org_headers(acme_id, acme_key)
    )
    assert [(i.name, i.measure_unit) for i in answer.inputs] == [("temperature", "C")]
    assert answer.inputs[0].id.startswith("sen")


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("organization-id", "nope"),),
        (("organization-id", "nope"), ("organization-api-key", "nope")),
        (("authorization", "Bearer x"),),
    ],
)
def test_bad_organisation_credentials(grpc_server: ServerUnderTest, metadata) -> None:
    with pytest.raises(grpc.RpcError) as info:
        grpc_server.inputs.ListInputs(inputs_pb2.ListInputsRequest(), metadata=metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_another_organisations_key_is_refused(grpc_server: ServerUnderTest) -> None:
    with grpc_server.database.session() as s:
        acme, _ = orgs.create_org(s, "acme")
        _, other_key = orgs.create_org(s, "other")
        acme_id = acme.id
    with pytest.raises(grpc.RpcError) as info:
        grpc_server.inputs.ListInputs(
            inputs_pb2.ListInputsRequest(), metadata=org_headers(acme_id, other_key)
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
