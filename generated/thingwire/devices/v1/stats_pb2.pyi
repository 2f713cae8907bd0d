from google.api import annotations_pb2 as _annotations_pb2
from thingwire.options.v1 import options_pb2 as _options_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetDeviceStatsRequest(_message.Message):
    __slots__ = ("user_id", "device_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class GetDeviceStatsResponse(_message.Message):
    __slots__ = ("connected", "connected_ts", "ip_address", "rx_bytes", "tx_bytes")
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_TS_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_FIELD_NUMBER: _ClassVar[int]
    connected: bool
    connected_ts: float
    ip_address: str
    rx_bytes: float
    tx_bytes: float
    def __init__(self, connected: _Optional[bool] = ..., connected_ts: _Optional[float] = ..., ip_address: _Optional[str] = ..., rx_bytes: _Optional[float] = ..., tx_bytes: _Optional[float] = ...) -> None: ...

class StreamDeviceStatsRequest(_message.Message):
    __slots__ = ("user_id", "device_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ...) -> None: ...

class StreamDeviceStatsResponse(_message.Message):
    __slots__ = ("connected", "connected_ts", "ip_address", "rx_bytes", "tx_bytes")
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_TS_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_FIELD_NUMBER: _ClassVar[int]
    connected: bool
    connected_ts: float
    ip_address: str
    rx_bytes: float
    tx_bytes: float
    def __init__(self, connected: _Optional[bool] = ..., connected_ts: _Optional[float] = ..., ip_address: _Optional[str] = ..., rx_bytes: _Optional[float] = ..., tx_bytes: _Optional[float] = ...) -> None: ...
