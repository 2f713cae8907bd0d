from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from thingwire.options.v1 import options_pb2 as _options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetResourceRequest(_message.Message):
    __slots__ = ("user_id", "device_id", "resource")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    resource: str
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., resource: _Optional[str] = ...) -> None: ...

class GetResourceResponse(_message.Message):
    __slots__ = ("out",)
    OUT_FIELD_NUMBER: _ClassVar[int]
    out: _struct_pb2.Value
    def __init__(self, out: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class CallResourceRequest(_message.Message):
    __slots__ = ("user_id", "device_id", "resource", "input", "body")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    resource: str
    input: _struct_pb2.Value
    body: _httpbody_pb2.HttpBody
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., resource: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class CallResourceResponse(_message.Message):
    __slots__ = ("out",)
    OUT_FIELD_NUMBER: _ClassVar[int]
    out: _struct_pb2.Value
    def __init__(self, out: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class DescribeResourcesRequest(_message.Message):
    __slots__ = ("user_id", "device_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...
