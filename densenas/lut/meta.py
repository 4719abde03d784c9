"""Typed LUT metadata: the provenance, the calibration, the deployment configuration
and the in-context refinement.

A LUT file's ``meta`` object is validated with these models on load, so a bad field
fails with one line naming the file and the field. The models serialise to the same
JSON layout the files have always had; provenance keeps fields it does not know (a
profile job records more than any consumer reads).

``Calibration.network_ms`` is the one place where a network's latency is computed from
the sum of its ops' costs; ``densenas.cost.latency.LatencyModel`` decides which costs
and which calibration go in.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from densenas.choices import Precision
from densenas.errors import DensenasError

# A finite float (JSON integers accepted, booleans refused) and a non-negative one.
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]

M = TypeVar("M", bound=BaseModel)


class _Model(BaseModel):
    # strict: a LUT is data written by a program; "2" is not 2 and true is not 1
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Calibration(_Model):
    """What a whole network costs beyond the sum of its ops, fitted by ``lut validate
    --calibrate``: ``scale * sum_of_ops + per_layer_ms * layers + overhead + network_offset_ms``.

    ``per_layer_ms`` is what each layer of a network costs beyond its op timed alone
    (cold weights, dispatch between modules; negative where a runtime fuses across ops).
    The default changes nothing."""

    network_offset_ms: Finite = 0.0
    scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    per_layer_ms: Finite = 0.0
    fitted_on: Annotated[int, Field(ge=0)] | None = None

    def network_ms(self, sum_of_ops: Any, layers: Any, overhead_ms: float) -> Any:
        """A network's latency from the sum of its ops' costs (each net of the per-call
        overhead) and its layer count: the overhead counted once, then this calibration.
        Arithmetic only, so floats, numpy arrays and torch tensors all go through."""
        return self.scale * sum_of_ops + self.per_layer_ms * layers + overhead_ms + self.network_offset_ms

    def to_lut(self) -> dict[str, Any]:
        """The JSON a LUT's ``meta.calibration`` holds: the offset always, the other
        fields as given (so a file is rewritten as it was read)."""
        return {"network_offset_ms": self.network_offset_ms,
                **self.model_dump(exclude_unset=True, exclude_none=True)}


class Deployment(_Model):
    """How whole networks run for this LUT (``meta.deployment``): the backend options a
    deployment uses (``network_options``) beside those its isolated rows were timed with
    (``op_timing_options``). A refinement's copy adds the backend, threads and timing
    scope its networks ran with."""

    network_options: dict[str, Any] = Field(default_factory=dict)
    op_timing_options: dict[str, Any] = Field(default_factory=dict)
    backend: str | None = None
    threads: Count | None = None
    timing_scope: str | None = None

    def to_lut(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Refinement(_Model):
    """How a LUT's in-context op costs (rows' ``context_ms``) were fitted from whole
    networks timed as deployed: ``method``, how many ``networks``, the ``held_out``
    scores (metric name to number), the ``prior_strength`` pulling each row toward its
    isolated time, when (``fitted_at``), the ``deployment`` configuration the networks
    ran in, and how many CPUs other processes kept busy meanwhile (``host_busy``).
    A refinement supersedes the calibration: predictions use it instead."""

    method: str
    networks: Annotated[int, Field(ge=0)]
    held_out: dict[str, Finite | None] = Field(default_factory=dict)
    prior_strength: NonNegative | None = None
    fitted_at: str = ""
    deployment: Deployment = Field(default_factory=Deployment)
    host_busy: NonNegative | None = None

    def to_lut(self) -> dict[str, Any]:
        """The JSON a LUT's ``meta.refinement`` holds (unset optional fields left out)."""
        return self.model_dump(exclude_none=True)


class Provenance(_Model):
    """The fields of a LUT's ``meta`` that code reads; every other field is kept as recorded."""

    model_config = ConfigDict(extra="allow")

    lut_version: Count = 1
    name: str | None = None
    backend: str = "unknown"
    backend_version: str | None = None
    device: str = "unknown"
    threads: Count | None = None
    precision: Annotated[Precision, Field(strict=False)] = Precision.FP32  # not strict: a file holds the value, not a member
    batch: Count = 1
    input_size: Count | None = None
    overhead_ms: NonNegative | None = None
    protocol: dict[str, Any] | None = None
    host: dict[str, Any] | None = None
    spaces: list[str] = Field(default_factory=list)
    date: str | None = None
    calibration: Calibration | None = None
    refinement: Refinement | None = None
    deployment: Deployment | None = None


def validated(model: type[M], data: Any, *, source: str, field: str) -> M:
    """``model`` validated from ``data`` (the JSON at ``field`` of file ``source``); a
    failure is one DensenasError line naming the file and the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join([field, *(str(p) for p in err["loc"])])
        got = repr(err.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        raise DensenasError(f"{source}: field {where!r}: {err['msg'][:1].lower()}{err['msg'][1:]}, got {got}") from None
