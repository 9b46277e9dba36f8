"""The wire protocol, read from kagglesdk itself: which request/response type each route takes.

Every ``*ApiClient`` in ``kagglesdk/**/services`` calls
``self._client.call("<Service>", "<Method>", request, <ResponseType>)``; :func:`routes` collects
those into ``{"Service/Method": (RequestType, ResponseType)}``, plus :data:`HAND_MADE` (calls a client makes by
hand, e.g. kagglehub's ``api.v1.DiagnosticsService/Hello``). :func:`parse_request` turns a JSON body into the
request type: wrong types and bad enum names are :class:`ApiError` 400s (kagglesdk's own ``from_dict`` would
silently accept them); a field the type does not declare is ignored and logged, as Kaggle's protobuf JSON parser
ignores unknown fields (a newer client sends fields this kagglesdk does not know).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import pkgutil
import re
from typing import Any, Dict, Tuple, Type

import kagglesdk
from kagglesdk.kaggle_object import (
    DateTimeSerializer,
    EnumSerializer,
    FieldMaskSerializer,
    FieldMetadata,
    KaggleObject,
    KaggleObjectSerializer,
    ListSerializer,
    MapSerializer,
    PredefinedSerializer,
    TimeDeltaSerializer,
)

log = logging.getLogger("kagflow.local")

INT64 = 1 << 63
_CALL_RE = re.compile(r'def \w+\(self, request: (\w+) = None\) -> (\w+):.*?self\._client\.call\("([\w.]+)", "(\w+)"',
                      re.S)


class ApiError(Exception):
    """A Kaggle-shaped error: answered as ``{"code": code, "message": message}``."""

    def __init__(self, code: int, message: str, *, headers: Dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


class ApiHelloRequest(KaggleObject):
    """kagglehub's credential check sends an ``ApiGetModelRequest`` with no field set (kagglesdk has no binding)."""

    def __init__(self):
        self._freeze()


class ApiHelloResponse(KaggleObject):
    """``{"userName": ...}``: what kagglehub's ``whoami()`` reads."""

    def __init__(self):
        self._user_name = ""
        self._freeze()

    @property
    def user_name(self) -> str:
        return self._user_name

    @user_name.setter
    def user_name(self, value: str):
        self._user_name = value


ApiHelloRequest._fields = []
ApiHelloResponse._fields = [FieldMetadata("userName", "user_name", "_user_name", str, "", PredefinedSerializer())]

# Calls a client sends by hand, with no kagglesdk binding to read their types from.
HAND_MADE = {"api.v1.DiagnosticsService/Hello": (ApiHelloRequest, ApiHelloResponse)}


@functools.lru_cache(maxsize=1)
def routes() -> Dict[str, Tuple[Type[KaggleObject], Type[KaggleObject]]]:
    """``{"blobs.BlobApiService/StartBlobUpload": (ApiStartBlobUploadRequest, ApiStartBlobUploadResponse), ...}``."""
    found: Dict[str, Tuple[type, type]] = dict(HAND_MADE)
    for info in pkgutil.walk_packages(kagglesdk.__path__, "kagglesdk."):
        if ".services." not in info.name:
            continue
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for req_name, resp_name, service, method in _CALL_RE.findall(inspect.getsource(cls)):
                found[f"{service}/{method}"] = (getattr(module, req_name), getattr(module, resp_name))
    return found


def parse_request(cls: Type[KaggleObject], data: Any) -> KaggleObject:
    """Build ``cls`` from a decoded JSON body, refusing values of the wrong type; undeclared fields are ignored."""
    check_object(cls, data, "")
    return cls.from_dict(data)


def check_object(cls: type, data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise ApiError(400, f"{where or 'body'}: expected a JSON object for {cls.__name__}")
    fields = {f.json_name: f for f in cls._fields}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        field = fields.get(key)
        if field is None:  # a newer client's field: ignored, as Kaggle's parser does
            log.info("ignored unknown field %r of %s", path[:200], cls.__name__)
            continue
        if value is None:
            continue
        _check_value(field.serializer, field.field_type, value, path)


def _check_value(serializer, field_type, value, path: str) -> None:
    if isinstance(serializer, ListSerializer):
        if not isinstance(value, list):
            raise ApiError(400, f"Invalid value at {path!r}: expected a list")
        item = _item_serializer(serializer)
        for i, v in enumerate(value):
            _check_value(item, field_type, v, f"{path}[{i}]")
    elif isinstance(serializer, MapSerializer):
        if not isinstance(value, dict):
            raise ApiError(400, f"Invalid value at {path!r}: expected an object")
    elif isinstance(serializer, KaggleObjectSerializer):
        check_object(field_type, value, path)
    elif isinstance(serializer, EnumSerializer):
        if not isinstance(value, str):
            raise ApiError(400, f"Invalid value at {path!r}: expected an enum name of {field_type.__name__}")
        try:
            EnumSerializer._from_str(field_type, value)
        except Exception:
            raise ApiError(400, f"Invalid value at {path!r}: {value!r} is not a {field_type.__name__}") from None
    elif isinstance(serializer, DateTimeSerializer):
        try:
            if not isinstance(value, str):
                raise ValueError
            DateTimeSerializer._from_str(value)
        except ValueError:
            raise ApiError(400, f"Invalid value at {path!r}: expected an ISO timestamp") from None
    elif isinstance(serializer, (TimeDeltaSerializer, FieldMaskSerializer)):
        if not isinstance(value, str):
            raise ApiError(400, f"Invalid value at {path!r}: expected a string")
    else:
        _check_plain(field_type, value, path)


def _check_plain(field_type, value, path: str) -> None:
    if field_type is bool:
        ok = isinstance(value, bool)
    elif field_type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and not -INT64 <= value < INT64:
            raise ApiError(400, f"Invalid value at {path!r}: {str(value)[:20]}... does not fit in 64 bits")
    elif field_type is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif field_type is str:
        ok = isinstance(value, str)
    elif field_type is bytes:
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ApiError(400, f"Invalid value at {path!r}: expected {getattr(field_type, '__name__', field_type)}, "
                            f"got {type(value).__name__}")


def _item_serializer(serializer: ListSerializer):
    """The serializer a ListSerializer was built with (kagglesdk keeps it only in a closure)."""
    for cell in serializer.from_dict_value.__closure__ or ():
        if hasattr(cell.cell_contents, "from_dict_value"):
            return cell.cell_contents
    raise RuntimeError("unexpected kagglesdk ListSerializer layout")


def to_wire(obj: KaggleObject) -> dict:
    """``obj.to_dict()``, except that timedeltas keep their days: kagglesdk writes ``delta.seconds`` (so a 30-hour
    quota went out as 6 hours); Kaggle's protobuf JSON is the whole duration, ``"108000s"``."""
    data = obj.to_dict()
    for field in obj._fields:
        value = getattr(obj, field.field_name, None)
        if field.json_name not in data or value is None:
            continue
        if isinstance(field.serializer, TimeDeltaSerializer):
            data[field.json_name] = f"{value.total_seconds():.9f}".rstrip("0").rstrip(".") + "s"
        elif isinstance(value, KaggleObject):
            data[field.json_name] = to_wire(value)
        elif isinstance(value, list) and value and all(isinstance(v, KaggleObject) for v in value):
            data[field.json_name] = [to_wire(v) for v in value]
    return data
