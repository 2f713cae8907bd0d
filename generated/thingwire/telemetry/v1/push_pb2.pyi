import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from thingwire.options.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PushRecordsRequest(_message.Message):
    __slots__ = ("body",)
    BODY_FIELD_NUMBER: _ClassVar[int]
    body: _httpbody_pb2.HttpBody
    def __init__(self, body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class PushRecordsResponse(_message.Message):
    __slots__ = ("stored", "repeats", "rejected")
    STORED_FIELD_NUMBER: _ClassVar[int]
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    repeats: int
    rejected: int
    def __init__(self, stored: _Optional[int] = ..., repeats: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class ListRejectedRecordsRequest(_message.Message):
    __slots__ = ("user_id", "device_id", "page_size", "page_token")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    page_size: int
    page_token: str
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRejectedRecordsResponse(_message.Message):
    __slots__ = ("rejected_records", "next_page_token", "total_size")
    REJECTED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    rejected_records: _containers.RepeatedCompositeFieldContainer[RejectedRecord]
    next_page_token: str
    total_size: int
    def __init__(self, rejected_records: _Optional[_Iterable[_Union[RejectedRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class RejectedRecord(_message.Message):
    __slots__ = ("position", "reason", "record", "receive_time", "source")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    RECEIVE_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    position: int
    reason: str
    record: str
    receive_time: _timestamp_pb2.Timestamp
    source: str
    def __init__(self, position: _Optional[int] = ..., reason: _Optional[str] = ..., record: _Optional[str] = ..., receive_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...
