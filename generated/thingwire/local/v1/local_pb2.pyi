from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from thingwire.options.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LoginRequest(_message.Message):
    __slots__ = ("raw",)
    RAW_FIELD_NUMBER: _ClassVar[int]
    raw: _httpbody_pb2.HttpBody
    def __init__(self, raw: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("token", "user")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    token: str
    user: LocalUser
    def __init__(self, token: _Optional[str] = ..., user: _Optional[_Union[LocalUser, _Mapping]] = ...) -> None: ...

class LocalUser(_message.Message):
    __slots__ = ("pk", "username", "has_devices", "is_local", "devices", "timezone")
    PK_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    HAS_DEVICES_FIELD_NUMBER: _ClassVar[int]
    IS_LOCAL_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    pk: int
    username: str
    has_devices: bool
    is_local: bool
    devices: _containers.RepeatedCompositeFieldContainer[LocalDevice]
    timezone: str
    def __init__(self, pk: _Optional[int] = ..., username: _Optional[str] = ..., has_devices: _Optional[bool] = ..., is_local: _Optional[bool] = ..., devices: _Optional[_Iterable[_Union[LocalDevice, _Mapping]]] = ..., timezone: _Optional[str] = ...) -> None: ...

class LocalDevice(_message.Message):
    __slots__ = ("unit_id", "display")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    display: str
    def __init__(self, unit_id: _Optional[str] = ..., display: _Optional[str] = ...) -> None: ...

class GetUnitRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetUnitResponse(_message.Message):
    __slots__ = ("unit_id",)
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    def __init__(self, unit_id: _Optional[str] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DownloadLogRequest(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: str
    def __init__(self, file: _Optional[str] = ...) -> None: ...

class ExecuteRequest(_message.Message):
    __slots__ = ("unit_id", "raw")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    raw: _httpbody_pb2.HttpBody
    def __init__(self, unit_id: _Optional[str] = ..., raw: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class ExecuteRawRequest(_message.Message):
    __slots__ = ("unit_id", "raw")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    raw: _httpbody_pb2.HttpBody
    def __init__(self, unit_id: _Optional[str] = ..., raw: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class GetApnSettingsRequest(_message.Message):
    __slots__ = ("unit_id",)
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    def __init__(self, unit_id: _Optional[str] = ...) -> None: ...

class UpdateApnSettingsRequest(_message.Message):
    __slots__ = ("unit_id", "raw")
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    unit_id: str
    raw: _httpbody_pb2.HttpBody
    def __init__(self, unit_id: _Optional[str] = ..., raw: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class ApnSettings(_message.Message):
    __slots__ = ("apn", "user", "pin", "mtu")
    APN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PASS_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    apn: str
    user: str
    pin: str
    mtu: int
    def __init__(self, apn: _Optional[str] = ..., user: _Optional[str] = ..., pin: _Optional[str] = ..., mtu: _Optional[int] = ..., **kwargs) -> None: ...
