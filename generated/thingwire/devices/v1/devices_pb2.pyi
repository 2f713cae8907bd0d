from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from thingwire.options.v1 import options_pb2 as _options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListDevicesRequest(_message.Message):
    __slots__ = ("user_id", "id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    id: str
    def __init__(self, user_id: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class CreateDeviceRequest(_message.Message):
    __slots__ = ("user_id", "device_id", "device_description", "device_credentials")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    device_description: str
    device_credentials: str
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., device_description: _Optional[str] = ..., device_credentials: _Optional[str] = ...) -> None: ...

class CreateDeviceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteDeviceRequest(_message.Message):
    __slots__ = ("user_id", "device_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class DeleteDeviceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDeviceTokensRequest(_message.Message):
    __slots__ = ("user_id", "device_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class CreateDeviceTokenRequest(_message.Message):
    __slots__ = ("user_id", "device_id", "token_name", "token_resources", "token_expiration")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_RESOURCES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_EXPIRATION_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    token_name: str
    token_resources: _struct_pb2.Value
    token_expiration: int
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., token_name: _Optional[str] = ..., token_resources: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., token_expiration: _Optional[int] = ...) -> None: ...

class CreateDeviceTokenResponse(_message.Message):
    __slots__ = ("id", "name", "token")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    token: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class DeleteDeviceTokenRequest(_message.Message):
    __slots__ = ("user_id", "device_id", "token_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    token_id: str
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., token_id: _Optional[str] = ...) -> None: ...

class DeleteDeviceTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
