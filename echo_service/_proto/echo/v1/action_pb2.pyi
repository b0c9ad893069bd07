import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_TYPE_UNSPECIFIED: _ClassVar[ValueType]
    VALUE_TYPE_STRING: _ClassVar[ValueType]
    VALUE_TYPE_INT: _ClassVar[ValueType]
    VALUE_TYPE_DOUBLE: _ClassVar[ValueType]
    VALUE_TYPE_BOOL: _ClassVar[ValueType]
    VALUE_TYPE_BYTES: _ClassVar[ValueType]
    VALUE_TYPE_JSON: _ClassVar[ValueType]
    VALUE_TYPE_MESSAGE: _ClassVar[ValueType]
    VALUE_TYPE_ANY: _ClassVar[ValueType]
    VALUE_TYPE_NONE: _ClassVar[ValueType]

class ActionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_STATE_UNSPECIFIED: _ClassVar[ActionState]
    ACTION_STATE_ACCEPTED: _ClassVar[ActionState]
    ACTION_STATE_SCHEDULED: _ClassVar[ActionState]
    ACTION_STATE_QUEUED: _ClassVar[ActionState]
    ACTION_STATE_RUNNING: _ClassVar[ActionState]
    ACTION_STATE_RETRYING: _ClassVar[ActionState]
    ACTION_STATE_PROGRESS: _ClassVar[ActionState]
    ACTION_STATE_SUCCEEDED: _ClassVar[ActionState]
    ACTION_STATE_FAILED: _ClassVar[ActionState]
    ACTION_STATE_CANCELLED: _ClassVar[ActionState]

class ErrorKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_KIND_UNSPECIFIED: _ClassVar[ErrorKind]
    ERROR_KIND_HANDLER: _ClassVar[ErrorKind]
    ERROR_KIND_TIMEOUT: _ClassVar[ErrorKind]
    ERROR_KIND_CANCELLED: _ClassVar[ErrorKind]
    ERROR_KIND_DEADLINE: _ClassVar[ErrorKind]
    ERROR_KIND_HOOK: _ClassVar[ErrorKind]
    ERROR_KIND_INVALID_RESULT: _ClassVar[ErrorKind]
    ERROR_KIND_INTERRUPTED: _ClassVar[ErrorKind]
VALUE_TYPE_UNSPECIFIED: ValueType
VALUE_TYPE_STRING: ValueType
VALUE_TYPE_INT: ValueType
VALUE_TYPE_DOUBLE: ValueType
VALUE_TYPE_BOOL: ValueType
VALUE_TYPE_BYTES: ValueType
VALUE_TYPE_JSON: ValueType
VALUE_TYPE_MESSAGE: ValueType
VALUE_TYPE_ANY: ValueType
VALUE_TYPE_NONE: ValueType
ACTION_STATE_UNSPECIFIED: ActionState
ACTION_STATE_ACCEPTED: ActionState
ACTION_STATE_SCHEDULED: ActionState
ACTION_STATE_QUEUED: ActionState
ACTION_STATE_RUNNING: ActionState
ACTION_STATE_RETRYING: ActionState
ACTION_STATE_PROGRESS: ActionState
ACTION_STATE_SUCCEEDED: ActionState
ACTION_STATE_FAILED: ActionState
ACTION_STATE_CANCELLED: ActionState
ERROR_KIND_UNSPECIFIED: ErrorKind
ERROR_KIND_HANDLER: ErrorKind
ERROR_KIND_TIMEOUT: ErrorKind
ERROR_KIND_CANCELLED: ErrorKind
ERROR_KIND_DEADLINE: ErrorKind
ERROR_KIND_HOOK: ErrorKind
ERROR_KIND_INVALID_RESULT: ErrorKind
ERROR_KIND_INTERRUPTED: ErrorKind

class Value(_message.Message):
    __slots__ = ("string_value", "int_value", "double_value", "bool_value", "bytes_value", "json_value", "message_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    JSON_VALUE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    int_value: int
    double_value: float
    bool_value: bool
    bytes_value: bytes
    json_value: str
    message_value: _any_pb2.Any
    def __init__(self, string_value: _Optional[str] = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., bool_value: _Optional[bool] = ..., bytes_value: _Optional[bytes] = ..., json_value: _Optional[str] = ..., message_value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class TypeRef(_message.Message):
    __slots__ = ("type", "message_type")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    type: ValueType
    message_type: str
    def __init__(self, type: _Optional[_Union[ValueType, str]] = ..., message_type: _Optional[str] = ...) -> None: ...

class Parameter(_message.Message):
    __slots__ = ("name", "type", "description", "max_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: TypeRef
    description: str
    max_bytes: int
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[TypeRef, _Mapping]] = ..., description: _Optional[str] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class ActionSignature(_message.Message):
    __slots__ = ("name", "inputs", "output", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    inputs: _containers.RepeatedCompositeFieldContainer[Parameter]
    output: TypeRef
    description: str
    def __init__(self, name: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ..., output: _Optional[_Union[TypeRef, _Mapping]] = ..., description: _Optional[str] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("initial_interval", "backoff_coefficient", "maximum_interval", "maximum_attempts", "non_retryable_error_types", "jitter")
    INITIAL_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_ERROR_TYPES_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    initial_interval: _duration_pb2.Duration
    backoff_coefficient: float
    maximum_interval: _duration_pb2.Duration
    maximum_attempts: int
    non_retryable_error_types: _containers.RepeatedScalarFieldContainer[str]
    jitter: float
    def __init__(self, initial_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_coefficient: _Optional[float] = ..., maximum_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., maximum_attempts: _Optional[int] = ..., non_retryable_error_types: _Optional[_Iterable[str]] = ..., jitter: _Optional[float] = ...) -> None: ...

class ActionOptions(_message.Message):
    __slots__ = ("delay", "not_before", "priority", "attempt_timeout", "deadline", "retry_policy", "idempotency_key", "next_action")
    DELAY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    NEXT_ACTION_FIELD_NUMBER: _ClassVar[int]
    delay: _duration_pb2.Duration
    not_before: _timestamp_pb2.Timestamp
    priority: int
    attempt_timeout: _duration_pb2.Duration
    deadline: _timestamp_pb2.Timestamp
    retry_policy: RetryPolicy
    idempotency_key: str
    next_action: Action
    def __init__(self, delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., priority: _Optional[int] = ..., attempt_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., next_action: _Optional[_Union[Action, _Mapping]] = ...) -> None: ...

class ActionError(_message.Message):
    __slots__ = ("type", "message", "kind", "non_retryable", "details")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    kind: ErrorKind
    non_retryable: bool
    details: str
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., kind: _Optional[_Union[ErrorKind, str]] = ..., non_retryable: _Optional[bool] = ..., details: _Optional[str] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("id", "name", "args", "options", "metadata", "trace_context", "state", "attempt", "result", "error", "create_time", "update_time", "parent_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    args: _containers.RepeatedCompositeFieldContainer[Value]
    options: ActionOptions
    metadata: _containers.ScalarMap[str, str]
    trace_context: _containers.ScalarMap[str, str]
    state: ActionState
    attempt: int
    result: Value
    error: ActionError
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    parent_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., args: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., options: _Optional[_Union[ActionOptions, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[ActionState, str]] = ..., attempt: _Optional[int] = ..., result: _Optional[_Union[Value, _Mapping]] = ..., error: _Optional[_Union[ActionError, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., parent_id: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("fraction", "message")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    message: str
    def __init__(self, fraction: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class ActionEvent(_message.Message):
    __slots__ = ("sequence", "action_id", "action_name", "state", "attempt", "time", "result", "error", "progress", "retry_delay", "trace_id")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    action_id: str
    action_name: str
    state: ActionState
    attempt: int
    time: _timestamp_pb2.Timestamp
    result: Value
    error: ActionError
    progress: Progress
    retry_delay: _duration_pb2.Duration
    trace_id: str
    def __init__(self, sequence: _Optional[int] = ..., action_id: _Optional[str] = ..., action_name: _Optional[str] = ..., state: _Optional[_Union[ActionState, str]] = ..., attempt: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., result: _Optional[_Union[Value, _Mapping]] = ..., error: _Optional[_Union[ActionError, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., retry_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., trace_id: _Optional[str] = ...) -> None: ...
