from google.protobuf import struct_pb2 as _struct_pb2
from thingwire.options.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_KIND_UNSPECIFIED: _ClassVar[ResourceKind]
    RESOURCE_KIND_OUTPUT: _ClassVar[ResourceKind]
    RESOURCE_KIND_INPUT: _ClassVar[ResourceKind]
    RESOURCE_KIND_INPUT_OUTPUT: _ClassVar[ResourceKind]
    RESOURCE_KIND_NONE: _ClassVar[ResourceKind]

class UploadFailure(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPLOAD_FAILURE_UNSPECIFIED: _ClassVar[UploadFailure]
    UPLOAD_FAILURE_STORAGE: _ClassVar[UploadFailure]
    UPLOAD_FAILURE_BUSY: _ClassVar[UploadFailure]
    UPLOAD_FAILURE_TOO_LARGE: _ClassVar[UploadFailure]
RESOURCE_KIND_UNSPECIFIED: ResourceKind
RESOURCE_KIND_OUTPUT: ResourceKind
RESOURCE_KIND_INPUT: ResourceKind
RESOURCE_KIND_INPUT_OUTPUT: ResourceKind
RESOURCE_KIND_NONE: ResourceKind
UPLOAD_FAILURE_UNSPECIFIED: UploadFailure
UPLOAD_FAILURE_STORAGE: UploadFailure
UPLOAD_FAILURE_BUSY: UploadFailure
UPLOAD_FAILURE_TOO_LARGE: UploadFailure

class ConnectRequest(_message.Message):
    __slots__ = ("hello", "result", "upload", "command_result")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    COMMAND_RESULT_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    result: Result
    upload: Upload
    command_result: CommandResult
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., result: _Optional[_Union[Result, _Mapping]] = ..., upload: _Optional[_Union[Upload, _Mapping]] = ..., command_result: _Optional[_Union[CommandResult, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("welcome", "invoke", "cancel", "go_away", "upload_ack", "upload_failed", "command")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    INVOKE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    GO_AWAY_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ACK_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FAILED_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    invoke: Invoke
    cancel: Cancel
    go_away: GoAway
    upload_ack: UploadAck
    upload_failed: UploadFailed
    command: Command
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., invoke: _Optional[_Union[Invoke, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., go_away: _Optional[_Union[GoAway, _Mapping]] = ..., upload_ack: _Optional[_Union[UploadAck, _Mapping]] = ..., upload_failed: _Optional[_Union[UploadFailed, _Mapping]] = ..., command: _Optional[_Union[Command, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("user", "device", "credentials", "link_secret", "device_token", "resources")
    USER_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    LINK_SECRET_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    user: str
    device: str
    credentials: str
    link_secret: str
    device_token: str
    resources: _containers.RepeatedCompositeFieldContainer[ResourceDeclaration]
    def __init__(self, user: _Optional[str] = ..., device: _Optional[str] = ..., credentials: _Optional[str] = ..., link_secret: _Optional[str] = ..., device_token: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[ResourceDeclaration, _Mapping]]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("link_secret", "max_calls_in_flight", "max_upload_bytes", "max_upload_records", "max_uploads_in_flight", "unit_id")
    LINK_SECRET_FIELD_NUMBER: _ClassVar[int]
    MAX_CALLS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOADS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    link_secret: str
    max_calls_in_flight: int
    max_upload_bytes: int
    max_upload_records: int
    max_uploads_in_flight: int
    unit_id: str
    def __init__(self, link_secret: _Optional[str] = ..., max_calls_in_flight: _Optional[int] = ..., max_upload_bytes: _Optional[int] = ..., max_upload_records: _Optional[int] = ..., max_uploads_in_flight: _Optional[int] = ..., unit_id: _Optional[str] = ...) -> None: ...

class ResourceDeclaration(_message.Message):
    __slots__ = ("name", "kind", "description", "example")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EXAMPLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: ResourceKind
    description: str
    example: _struct_pb2.Value
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[ResourceKind, str]] = ..., description: _Optional[str] = ..., example: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class Invoke(_message.Message):
    __slots__ = ("call_id", "resource", "input", "deadline_ms")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    resource: str
    input: _struct_pb2.Value
    deadline_ms: int
    def __init__(self, call_id: _Optional[int] = ..., resource: _Optional[str] = ..., input: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("call_id", "output", "error")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    output: _struct_pb2.Value
    error: str
    def __init__(self, call_id: _Optional[int] = ..., output: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("call_id", "structured", "raw_line", "deadline_ms")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_FIELD_NUMBER: _ClassVar[int]
    RAW_LINE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    structured: StructuredCommand
    raw_line: str
    deadline_ms: int
    def __init__(self, call_id: _Optional[int] = ..., structured: _Optional[_Union[StructuredCommand, _Mapping]] = ..., raw_line: _Optional[str] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class StructuredCommand(_message.Message):
    __slots__ = ("command", "args_json", "kwargs_json")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    KWARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    command: str
    args_json: bytes
    kwargs_json: bytes
    def __init__(self, command: _Optional[str] = ..., args_json: _Optional[bytes] = ..., kwargs_json: _Optional[bytes] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("call_id", "result_json", "failure")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    result_json: bytes
    failure: CommandFailure
    def __init__(self, call_id: _Optional[int] = ..., result_json: _Optional[bytes] = ..., failure: _Optional[_Union[CommandFailure, _Mapping]] = ...) -> None: ...

class CommandFailure(_message.Message):
    __slots__ = ("status", "message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: int
    message: str
    def __init__(self, status: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("call_id",)
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: int
    def __init__(self, call_id: _Optional[int] = ...) -> None: ...

class GoAway(_message.Message):
    __slots__ = ("reconnect_after_ms", "reason")
    RECONNECT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reconnect_after_ms: int
    reason: str
    def __init__(self, reconnect_after_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Upload(_message.Message):
    __slots__ = ("batch_id", "records")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    records: bytes
    def __init__(self, batch_id: _Optional[str] = ..., records: _Optional[bytes] = ...) -> None: ...

class UploadAck(_message.Message):
    __slots__ = ("batch_id", "stored", "repeats", "rejected", "repeated_batch")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    REPEATED_BATCH_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    stored: int
    repeats: int
    rejected: int
    repeated_batch: bool
    def __init__(self, batch_id: _Optional[str] = ..., stored: _Optional[int] = ..., repeats: _Optional[int] = ..., rejected: _Optional[int] = ..., repeated_batch: _Optional[bool] = ...) -> None: ...

class UploadFailed(_message.Message):
    __slots__ = ("batch_id", "retry_after_ms", "reason", "failure")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    retry_after_ms: int
    reason: str
    failure: UploadFailure
    def __init__(self, batch_id: _Optional[str] = ..., retry_after_ms: _Optional[int] = ..., reason: _Optional[str] = ..., failure: _Optional[_Union[UploadFailure, str]] = ...) -> None: ...
