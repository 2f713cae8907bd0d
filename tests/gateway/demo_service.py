"""A test-only service with REST options no production rpc uses yet (a 201 create).

It is built as a descriptor at import (no .proto in proto/, so it is never part of the
contract), added to the default descriptor pool so that `server.rest_interceptor` reads its
options like any rpc's, and written with the real image into one descriptor set for Envoy.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from google.api import annotations_pb2
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, struct_pb2
from thingwire.options.v1 import options_pb2

PACKAGE = "thingwire.demo.v1"
SERVICE_NAME = "DemoService"
#: Datacooee documents 201 for creates; this rpc declares it.
CREATE_PATH = "/api/external/v1/demo_things"
CREATED = 201


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto_file = descriptor_pb2.FileDescriptorProto(
        name="thingwire/demo/v1/demo.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=[
            "google/api/annotations.proto",
            "google/protobuf/struct.proto",
            "thingwire/options/v1/options.proto",
        ],
    )
    method = proto_file.service.add(name=SERVICE_NAME).method.add(
        name="CreateThing",
        input_type=".google.protobuf.Struct",
        output_type=".google.protobuf.Struct",
    )
    rule = method.options.Extensions[annotations_pb2.http]
    rule.post = CREATE_PATH
    rule.body = "*"
    method.options.Extensions[options_pb2.access] = options_pb2.ACCESS_PUBLIC
    method.options.Extensions[options_pb2.api_family] = options_pb2.API_FAMILY_DATACOOEE
    method.options.Extensions[options_pb2.http_status] = CREATED
    return proto_file


DEMO_FILE = _file()
descriptor_pool.Default().Add(DEMO_FILE)
DEMO_SERVICE: descriptor.ServiceDescriptor = descriptor_pool.Default().FindServiceByName(
    f"{PACKAGE}.{SERVICE_NAME}"
)


async def _create_thing(
    request: struct_pb2.Struct, context: grpc.aio.ServicerContext
) -> struct_pb2.Struct:
    """Echoes the body with an id, as a create answers."""
    answer = struct_pb2.Struct()
    answer.update({**dict(request.items()), "id": "thing1"})
    return answer


def demo_service_handler() -> grpc.GenericRpcHandler:
    """The servicer of DemoService, registered without generated stubs."""
    return grpc.method_handlers_generic_handler(
        DEMO_SERVICE.full_name,
        {
            "CreateThing": grpc.unary_unary_rpc_method_handler(
                _create_thing,
                request_deserializer=struct_pb2.Struct.FromString,
                response_serializer=struct_pb2.Struct.SerializeToString,
            )
        },
    )


def write_image(base: Path, target: Path) -> Path:
    """The descriptor set `base` plus DemoService, written to `target` for Envoy."""
    image = descriptor_pb2.FileDescriptorSet.FromString(base.read_bytes())
    image.file.append(DEMO_FILE)
    target.write_bytes(image.SerializeToString())
    return target


__all__ = ["CREATED", "CREATE_PATH", "DEMO_SERVICE", "demo_service_handler", "write_image"]
