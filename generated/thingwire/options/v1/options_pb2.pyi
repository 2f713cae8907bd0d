from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class Access(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_UNSPECIFIED: _ClassVar[Access]
    ACCESS_PUBLIC: _ClassVar[Access]
    ACCESS_USER: _ClassVar[Access]
    ACCESS_ORGANIZATION: _ClassVar[Access]
    ACCESS_USER_OR_DEVICE_TOKEN: _ClassVar[Access]
    ACCESS_DEVICE: _ClassVar[Access]

class ApiFamily(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    API_FAMILY_UNSPECIFIED: _ClassVar[ApiFamily]
    API_FAMILY_AUTOPI: _ClassVar[ApiFamily]
    API_FAMILY_THINGER: _ClassVar[ApiFamily]
    API_FAMILY_DATACOOEE: _ClassVar[ApiFamily]
    API_FAMILY_LOCAL: _ClassVar[ApiFamily]
ACCESS_UNSPECIFIED: Access
ACCESS_PUBLIC: Access
ACCESS_USER: Access
ACCESS_ORGANIZATION: Access
ACCESS_USER_OR_DEVICE_TOKEN: Access
ACCESS_DEVICE: Access
API_FAMILY_UNSPECIFIED: ApiFamily
API_FAMILY_AUTOPI: ApiFamily
API_FAMILY_THINGER: ApiFamily
API_FAMILY_DATACOOEE: ApiFamily
API_FAMILY_LOCAL: ApiFamily
ACCESS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor
API_FAMILY_FIELD_NUMBER: _ClassVar[int]
api_family: _descriptor.FieldDescriptor
HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
http_status: _descriptor.FieldDescriptor
