from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from thingwire.options.v1 import options_pb2 as _options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ReadLogbookRequest(_message.Message):
    __slots__ = ("device_id", "field", "field_type", "from_utc", "to_utc", "aggregation", "interval", "size")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    FIELD_TYPE_FIELD_NUMBER: _ClassVar[int]
    FROM_UTC_FIELD_NUMBER: _ClassVar[int]
    TO_UTC_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    field: str
    field_type: str
    from_utc: str
    to_utc: str
    aggregation: str
    interval: str
    size: str
    def __init__(self, device_id: _Optional[str] = ..., field: _Optional[str] = ..., field_type: _Optional[str] = ..., from_utc: _Optional[str] = ..., to_utc: _Optional[str] = ..., aggregation: _Optional[str] = ..., interval: _Optional[str] = ..., size: _Optional[str] = ...) -> None: ...
