"""An OpenFeature provider for Python services: flags from Conveyor, evaluated in process.

Like Unleash's server SDKs, it fetches an environment's definitions from the evaluation
API (`GET /flags/{environment}`, revalidated by ETag) and evaluates locally with the same
engine as the server, so an evaluation costs no request. A thread refreshes every
`refresh_interval` seconds; a kill reaches the service within one interval.

    from openfeature import api
    from conveyor_openfeature import ConveyorProvider

    api.set_provider_and_wait(ConveyorProvider("http://127.0.0.1:4242", "production"))
    client = api.get_client()
    client.get_boolean_value("new-catalogue-banner", False, EvaluationContext("user-42"))

The evaluation context's targeting key is the `userId` context field unless the attributes
name one. Values: boolean = the flag's on/off; string = the variant's string payload, or
the variant's name when it has none; integer/float = a number payload; object = a JSON one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, GeneralError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.provider import AbstractProvider, Metadata

from conveyor_openfeature.evaluate import Evaluation, evaluate
from conveyor_openfeature.model import DefinitionsBody, Flag, PayloadType, Segment, Variant

PROVIDER_NAME = "conveyor"
TARGETING_FIELD = "userId"
T = TypeVar("T")
ObjectValue = Sequence[FlagValueType] | Mapping[str, FlagValueType]


class _TypeMismatch(Exception):
    """The variant's payload is not of the requested type."""


@dataclass(frozen=True)
class _Definitions:
    version: int
    flags: Mapping[str, Flag] = field(default_factory=dict)
    segments: Mapping[str, Segment] = field(default_factory=dict)


class ConveyorProvider(AbstractProvider):
    def __init__(
        self,
        url: str,
        environment: str,
        *,
        refresh_interval: float = 15.0,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__()
        self.environment = environment
        self.refresh_interval = refresh_interval
        self._http = httpx.Client(base_url=url, timeout=timeout, transport=transport)
        self._definitions: _Definitions | None = None
        self._etag: str | None = None
        self._stale = False
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self._refresh_lock = threading.Lock()

    # --- life cycle ---------------------------------------------------------------------

    def get_metadata(self) -> Metadata:
        return Metadata(name=PROVIDER_NAME)

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Fetch the definitions, then keep them fresh; a failed first fetch is an error
        (the SDK reports it) but the refresher keeps trying."""
        if self._refresher is None and self.refresh_interval > 0:
            self._refresher = threading.Thread(
                target=self._refresh_loop, name="conveyor-flags-refresh", daemon=True
            )
            self._refresher.start()
        try:
            self.refresh()
        except httpx.HTTPError as error:
            self._stale = True  # the refresher announces READY once a fetch succeeds
            raise GeneralError(f"cannot fetch flags of {self.environment}: {error}") from error

    def shutdown(self) -> None:
        self._stop.set()
        if self._refresher is not None and self._refresher is not threading.current_thread():
            self._refresher.join()
        self._http.close()

    def refresh(self) -> list[str]:
        """Fetch the definitions unless unchanged; returns the names of changed flags."""
        with self._refresh_lock:
            headers = {"If-None-Match": self._etag} if self._etag else {}
            response = self._http.get(f"/flags/{self.environment}", headers=headers)
            if response.status_code == httpx.codes.NOT_MODIFIED:
                return []
            response.raise_for_status()
            body = DefinitionsBody.model_validate(response.json())
            fresh = _Definitions(
                version=body.version,
                flags={flag.name: flag for flag in body.flags},
                segments={segment.name: segment for segment in body.segments},
            )
            changed = _changed_flags(self._definitions, fresh)
            self._definitions, self._etag = fresh, response.headers.get("ETag")
            return changed

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            try:
                changed = self.refresh()
            except httpx.HTTPError as error:
                self._stale = True
                self.emit_provider_stale(ProviderEventDetails(message=str(error)))
                continue
            if self._stale:
                self._stale = False
                self.emit_provider_ready(ProviderEventDetails())
            if changed:
                details = ProviderEventDetails(flags_changed=changed)
                self.emit_provider_configuration_changed(details)

    # --- resolution ---------------------------------------------------------------------

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_boolean)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_string)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_integer)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: ObjectValue,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[ObjectValue]:
        return self._resolve(flag_key, default_value, evaluation_context, _as_object)

    def _resolve(
        self,
        flag_key: str,
        default: T,
        evaluation_context: EvaluationContext | None,
        convert: Callable[[Evaluation], T | None],
    ) -> FlagResolutionDetails[T]:
        definitions = self._definitions
        if definitions is None:
            return _error(default, ErrorCode.PROVIDER_NOT_READY, "no definitions fetched yet")
        flag = definitions.flags.get(flag_key)
        if flag is None:
            message = f"no flag {flag_key!r} in {self.environment}"
            return _error(default, ErrorCode.FLAG_NOT_FOUND, message)
        result = evaluate(flag, context_of(evaluation_context), definitions.segments)
        try:
            value = convert(result)
        except _TypeMismatch as error:
            return _error(default, ErrorCode.TYPE_MISMATCH, str(error))
        return FlagResolutionDetails(
            value=default if value is None else value,
            reason=Reason(result.reason.value),
            variant=result.variant.name if result.variant else None,
            flag_metadata={"version": definitions.version, "detail": result.detail},
        )


def context_of(evaluation_context: EvaluationContext | None) -> dict[str, Any]:
    """An OpenFeature evaluation context as a Conveyor context: its attributes, with the
    targeting key as userId unless the attributes have one."""
    if evaluation_context is None:
        return {}
    context: dict[str, Any] = dict(evaluation_context.attributes)
    if evaluation_context.targeting_key and TARGETING_FIELD not in context:
        context[TARGETING_FIELD] = evaluation_context.targeting_key
    return context


def _changed_flags(old: _Definitions | None, new: _Definitions) -> list[str]:
    before = old.flags if old else {}
    names = set(before) | set(new.flags)
    return sorted(name for name in names if before.get(name) != new.flags.get(name))


def _error(default: T, code: ErrorCode, message: str) -> FlagResolutionDetails[T]:
    return FlagResolutionDetails(
        value=default, reason=Reason.ERROR, error_code=code, error_message=message
    )


# --- converting an evaluation to each OpenFeature type (None: the caller's default) -----


def _as_boolean(result: Evaluation) -> bool:
    return result.enabled


def _as_string(result: Evaluation) -> str | None:
    variant = _variant(result)
    if variant is None:
        return None
    if variant.payload is None:
        return variant.name
    return str(_payload(variant, PayloadType.STRING))


def _as_float(result: Evaluation) -> float | None:
    variant = _variant(result)
    return None if variant is None else float(str(_payload(variant, PayloadType.NUMBER)))


def _as_integer(result: Evaluation) -> int | None:
    number = _as_float(result)
    if number is None:
        return None
    if not number.is_integer():
        raise _TypeMismatch(f"the payload {number} is not an integer")
    return int(number)


def _as_object(result: Evaluation) -> ObjectValue | None:
    variant = _variant(result)
    if variant is None:
        return None
    value = _payload(variant, PayloadType.JSON)
    if not isinstance(value, Mapping | list):
        raise _TypeMismatch(f"variant {variant.name} holds no JSON object or array")
    return value


def _variant(result: Evaluation) -> Variant | None:
    return result.variant if result.enabled else None


def _payload(variant: Variant, wanted: PayloadType) -> object:
    if variant.payload is None or variant.payload.type is not wanted:
        have = variant.payload.type if variant.payload else "no payload"
        raise _TypeMismatch(f"variant {variant.name} has {have}, not a {wanted} payload")
    return variant.payload.decoded()
