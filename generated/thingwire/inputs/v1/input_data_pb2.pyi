import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.api import httpbody_pb2 as _httpbody_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from thingwire.options.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InputDataOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INPUT_DATA_ORDER_UNSPECIFIED: _ClassVar[InputDataOrder]
    INPUT_DATA_ORDER_TIMESTAMP: _ClassVar[InputDataOrder]
    INPUT_DATA_ORDER_VALUE: _ClassVar[InputDataOrder]

class Aggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGGREGATION_UNSPECIFIED: _ClassVar[Aggregation]
    AGGREGATION_MIN: _ClassVar[Aggregation]
    AGGREGATION_MAX: _ClassVar[Aggregation]
    AGGREGATION_AVG: _ClassVar[Aggregation]
INPUT_DATA_ORDER_UNSPECIFIED: InputDataOrder
INPUT_DATA_ORDER_TIMESTAMP: InputDataOrder
INPUT_DATA_ORDER_VALUE: InputDataOrder
AGGREGATION_UNSPECIFIED: Aggregation
AGGREGATION_MIN: Aggregation
AGGREGATION_MAX: Aggregation
AGGREGATION_AVG: Aggregation

class CreateInputDataRequest(_message.Message):
    __slots__ = ("input_pk", "body")
    INPUT_PK_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    input_pk: str
    body: _httpbody_pb2.HttpBody
    def __init__(self, input_pk: _Optional[str] = ..., body: _Optional[_Union[_httpbody_pb2.HttpBody, _Mapping]] = ...) -> None: ...

class GetInputDataByInputsRequest(_message.Message):
    __slots__ = ("input_ids", "start_time", "end_time", "lookback", "limit_per_input", "include_location", "include_x_axis_value", "include_metadata", "order", "descending")
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LOOKBACK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_INPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LOCATION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_X_AXIS_VALUE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    input_ids: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    lookback: _duration_pb2.Duration
    limit_per_input: int
    include_location: bool
    include_x_axis_value: bool
    include_metadata: bool
    order: InputDataOrder
    descending: bool
    def __init__(self, input_ids: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lookback: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit_per_input: _Optional[int] = ..., include_location: _Optional[bool] = ..., include_x_axis_value: _Optional[bool] = ..., include_metadata: _Optional[bool] = ..., order: _Optional[_Union[InputDataOrder, str]] = ..., descending: _Optional[bool] = ...) -> None: ...

class GetLatestInputDataByInputsRequest(_message.Message):
    __slots__ = ("input_ids", "lookback", "limit_per_input", "include_location", "include_x_axis_value", "include_metadata", "order", "descending")
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    LOOKBACK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_INPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LOCATION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_X_AXIS_VALUE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    input_ids: _containers.RepeatedScalarFieldContainer[str]
    lookback: _duration_pb2.Duration
    limit_per_input: int
    include_location: bool
    include_x_axis_value: bool
    include_metadata: bool
    order: InputDataOrder
    descending: bool
    def __init__(self, input_ids: _Optional[_Iterable[str]] = ..., lookback: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit_per_input: _Optional[int] = ..., include_location: _Optional[bool] = ..., include_x_axis_value: _Optional[bool] = ..., include_metadata: _Optional[bool] = ..., order: _Optional[_Union[InputDataOrder, str]] = ..., descending: _Optional[bool] = ...) -> None: ...

class GetStatisticsInputDataByInputsRequest(_message.Message):
    __slots__ = ("input_ids", "start_time", "end_time", "lookback", "limit_per_input", "aggregations")
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LOOKBACK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_INPUT_FIELD_NUMBER: _ClassVar[int]
    AGGREGATIONS_FIELD_NUMBER: _ClassVar[int]
    input_ids: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    lookback: _duration_pb2.Duration
    limit_per_input: int
    aggregations: _containers.RepeatedScalarFieldContainer[Aggregation]
    def __init__(self, input_ids: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lookback: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit_per_input: _Optional[int] = ..., aggregations: _Optional[_Iterable[_Union[Aggregation, str]]] = ...) -> None: ...

class GetLatestStatisticsInputDataByInputsRequest(_message.Message):
    __slots__ = ("input_ids", "lookback", "limit_per_input", "aggregations")
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    LOOKBACK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_INPUT_FIELD_NUMBER: _ClassVar[int]
    AGGREGATIONS_FIELD_NUMBER: _ClassVar[int]
    input_ids: _containers.RepeatedScalarFieldContainer[str]
    lookback: _duration_pb2.Duration
    limit_per_input: int
    aggregations: _containers.RepeatedScalarFieldContainer[Aggregation]
    def __init__(self, input_ids: _Optional[_Iterable[str]] = ..., lookback: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit_per_input: _Optional[int] = ..., aggregations: _Optional[_Iterable[_Union[Aggregation, str]]] = ...) -> None: ...

class GetInputDataByAssetRequest(_message.Message):
    __slots__ = ("asset_pk", "input_ids", "start_time", "end_time", "lookback", "limit_per_input", "include_location", "include_x_axis_value", "include_metadata", "order", "descending")
    ASSET_PK_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LOOKBACK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_INPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LOCATION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_X_AXIS_VALUE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    asset_pk: int
    input_ids: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    lookback: _duration_pb2.Duration
    limit_per_input: int
    include_location: bool
    include_x_axis_value: bool
    include_metadata: bool
    order: InputDataOrder
    descending: bool
    def __init__(self, asset_pk: _Optional[int] = ..., input_ids: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lookback: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit_per_input: _Optional[int] = ..., include_location: _Optional[bool] = ..., include_x_axis_value: _Optional[bool] = ..., include_metadata: _Optional[bool] = ..., order: _Optional[_Union[InputDataOrder, str]] = ..., descending: _Optional[bool] = ...) -> None: ...

class GetLatestInputDataByAssetRequest(_message.Message):
    __slots__ = ("asset_pk", "input_ids", "lookback", "limit_per_input", "include_location", "include_x_axis_value", "include_metadata", "order", "descending")
    ASSET_PK_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    LOOKBACK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_INPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_LOCATION_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_X_AXIS_VALUE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_METADATA_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    asset_pk: int
    input_ids: _containers.RepeatedScalarFieldContainer[str]
    lookback: _duration_pb2.Duration
    limit_per_input: int
    include_location: bool
    include_x_axis_value: bool
    include_metadata: bool
    order: InputDataOrder
    descending: bool
    def __init__(self, asset_pk: _Optional[int] = ..., input_ids: _Optional[_Iterable[str]] = ..., lookback: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit_per_input: _Optional[int] = ..., include_location: _Optional[bool] = ..., include_x_axis_value: _Optional[bool] = ..., include_metadata: _Optional[bool] = ..., order: _Optional[_Union[InputDataOrder, str]] = ..., descending: _Optional[bool] = ...) -> None: ...

class GetStatisticsInputDataByAssetRequest(_message.Message):
    __slots__ = ("asset_pk", "input_ids", "start_time", "end_time", "lookback", "limit_per_input", "aggregations")
    ASSET_PK_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    LOOKBACK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_INPUT_FIELD_NUMBER: _ClassVar[int]
    AGGREGATIONS_FIELD_NUMBER: _ClassVar[int]
    asset_pk: int
    input_ids: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    lookback: _duration_pb2.Duration
    limit_per_input: int
    aggregations: _containers.RepeatedScalarFieldContainer[Aggregation]
    def __init__(self, asset_pk: _Optional[int] = ..., input_ids: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lookback: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit_per_input: _Optional[int] = ..., aggregations: _Optional[_Iterable[_Union[Aggregation, str]]] = ...) -> None: ...

class GetLatestStatisticsInputDataByAssetRequest(_message.Message):
    __slots__ = ("asset_pk", "input_ids", "lookback", "limit_per_input", "aggregations")
    ASSET_PK_FIELD_NUMBER: _ClassVar[int]
    INPUT_IDS_FIELD_NUMBER: _ClassVar[int]
    LOOKBACK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_PER_INPUT_FIELD_NUMBER: _ClassVar[int]
    AGGREGATIONS_FIELD_NUMBER: _ClassVar[int]
    asset_pk: int
    input_ids: _containers.RepeatedScalarFieldContainer[str]
    lookback: _duration_pb2.Duration
    limit_per_input: int
    aggregations: _containers.RepeatedScalarFieldContainer[Aggregation]
    def __init__(self, asset_pk: _Optional[int] = ..., input_ids: _Optional[_Iterable[str]] = ..., lookback: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., limit_per_input: _Optional[int] = ..., aggregations: _Optional[_Iterable[_Union[Aggregation, str]]] = ...) -> None: ...
