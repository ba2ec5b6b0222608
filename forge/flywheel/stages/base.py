"""What a stage is: a name, a notebook, the stage before it, the configuration it reads, what else
it reads (its inputs' digests), whether its outputs are still intact, and its work; and the typed
result it records under ``runs/iter-NNNN/results/<stage>.json``.

A stage's code never sees the whole :class:`~forge.flywheel.config.Config`: it gets a
:class:`ConfigView` holding only the fields its stage declares, and reading any other field is an
error. The declared fields are what enters the stage's fingerprint (less those it marks untracked,
each with the reason), so a stage cannot start depending on a field without that field also
deciding when the stage runs again.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from forge.atomic import atomic_write_text
from forge.errors import ForgeError
from forge.flywheel.config import FIELD_SECTION, SECTIONS, Config, field_default
from forge.flywheel.paths import Workspace
from forge.flywheel.records import Provenance

if TYPE_CHECKING:
    from forge.digests import DigestMemo
    from forge.flywheel.context import Context
    from forge.flywheel.state import State


class StageOrderError(ForgeError):
    """A stage was asked for before the stage it depends on has a result."""


class StageError(ForgeError):
    """A stage could not do its work (the message says what failed)."""


# ---------------------------------------------------------------------------------------------- config views


class _Part:
    """The fields of one section a view declares: reading another names where to declare it."""

    def __init__(self, view: ConfigView, section: str, values: dict[str, Any]):
        self._view, self._section, self._values = view, section, values

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise self._view._undeclared(f"{self._section}.{name}", name) from None


class ConfigView:
    """A stage's view of the configuration: a subclass names, in ``reads``, the sections and fields its
    stage reads (by name: their types are the configuration's), ``untracked`` those of them that do not
    enter the fingerprint (each with why that is safe: it does not change the result, or an input holds
    it already) and ``added`` those the stage began to read after results were recorded (with why),
    whose default does what the stage did before: they enter the fingerprint only when set away from it,
    so results recorded earlier keep their fingerprints, and a changed value still reruns the stage.

    The view reads like the configuration (``cfg.training.lr``); a section whose every field is declared
    is the section itself (what :func:`forge.ml.training.train` takes), and reading anything undeclared
    is an AttributeError that says where to declare it.
    """

    stage: ClassVar[str] = "this"
    reads: ClassVar[tuple[str, ...]] = ()
    untracked: ClassVar[dict[str, str]] = {}
    added: ClassVar[dict[str, str]] = {}
    #: every declared field, by name (reads and untracked, sections expanded)
    fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = []
        for name in (*cls.reads, *cls.untracked):
            if name in SECTIONS:
                names += [f for f in SECTIONS[name].model_fields if f not in names]
            elif name in FIELD_SECTION:
                names += [name] if name not in names else []
            else:
                raise TypeError(f"{cls.__name__} reads {name!r}, which is no configuration section or field")
        for name in (*cls.untracked, *cls.added):
            if name not in FIELD_SECTION:
                raise TypeError(f"{cls.__name__} marks {name!r}, which is no configuration field")
        if set(cls.added) & set(cls.untracked):
            raise TypeError(f"{cls.__name__}: a field is either added or untracked")
        cls.fields = tuple(names)

    def __init__(self, config: Config):
        if not isinstance(config, Config):
            raise TypeError(f"{type(self).__name__} is made from a Config, got {type(config).__name__}")
        self._config = config

    def fingerprinted(self) -> dict[str, Any]:
        """The declared fields that enter the fingerprint, by name (an added one only when it is not at its
        default)."""
        flat = self._config.flat()
        return {name: flat[name] for name in self.fields if name not in self.untracked
                and not (name in self.added and flat[name] == field_default(name))}

    def get(self, name: str) -> Any:
        """A declared field by its name alone."""
        if name not in self.fields:
            raise self._undeclared(f"{FIELD_SECTION.get(name, '?')}.{name}", name)
        return self._config.get(name)

    def _undeclared(self, path: str, name: str) -> AttributeError:
        return AttributeError(f"the {self.stage} stage reads config.{path} without declaring it: add {name!r} to "
                              f"{type(self).__name__}.reads (in {type(self).__module__}) so that a change to it "
                              "reruns the stage")

    def __getattr__(self, name: str) -> Any:  # only called for a name the view does not hold
        if name.startswith("_"):
            raise AttributeError(name)
        if name in SECTIONS:
            section = getattr(self._config, name)
            mine = [f for f in SECTIONS[name].model_fields if f in self.fields]
            if len(mine) == len(SECTIONS[name].model_fields):
                return section
            return _Part(self, name, {f: getattr(section, f) for f in mine})
        raise self._undeclared(f"{FIELD_SECTION[name]}.{name}" if name in FIELD_SECTION else name, name)


# ---------------------------------------------------------------------------------------------- results


class StageResult(BaseModel):
    """What every recorded result carries besides its stage's own fields: the fingerprint of its
    inputs (and the inputs themselves, to say what changed), its duration, its notebook's
    provenance, and who ran it where (what the loop archives for a stage run by hand:
    :mod:`forge.flywheel.by_hand`)."""

    model_config = ConfigDict(extra="forbid")

    fingerprint: str | None = None  # None: recorded before fingerprints existed
    inputs: dict[str, Any] | None = None
    seconds: float | None = None
    provenance: Provenance | None = None
    ran_by: Literal["loop", "hand"] | None = None  # None: recorded before this was recorded
    ran_in: str | None = None  # run by hand: the notebook, where its kernel said (None: unknown)

    _RECORD: ClassVar[tuple[str, ...]] = ("fingerprint", "inputs", "seconds", "provenance", "ran_by", "ran_in")

    @classmethod
    def from_json(cls, text: str) -> Self:
        """A recorded result; keys this version does not know (an older or newer forge's) are left out."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a result is a JSON object, got {type(data).__name__}")
        return cls.model_validate_json(json.dumps({k: v for k, v in data.items() if k in cls.model_fields}))

    def to_json(self) -> str:
        """The fields that were set (the stage's own first, then its record), as the stage wrote them."""
        data = self.model_dump(mode="json", exclude_unset=True)
        ordered = {k: v for k, v in data.items() if k not in self._RECORD}
        ordered.update({k: data[k] for k in self._RECORD if k in data})
        return json.dumps(ordered, indent=2)

    def plain(self) -> dict[str, Any]:
        """The result as plain data, in the order :meth:`to_json` writes it (for tables)."""
        return json.loads(self.to_json())


# ---------------------------------------------------------------------------------------------- stages

C = TypeVar("C", bound=ConfigView)
R = TypeVar("R", bound=StageResult)

#: ``inputs(ctx, cfg, upstream_result, memo)``: what the stage reads besides its configuration.
Inputs = Callable[["Context", Any, Any, "DigestMemo"], dict[str, Any]]
#: ``intact(ctx, result, memo)``: why a recorded result's outputs can no longer be trusted, else None.
Intact = Callable[["Context", Any, "DigestMemo"], str | None]
#: ``work(ctx, cfg, progress, memo, **options)``: do the stage, return its result.
Work = Callable[..., Any]


def always_intact(ctx: Context, result: Any, memo: DigestMemo) -> str | None:
    """For a stage whose outputs are its result alone."""
    return None


@dataclasses.dataclass(frozen=True, eq=False)
class Stage(Generic[C, R]):
    """One stage of an iteration: everything the loop, the fingerprints and the notebooks need to know.

    ``work`` and ``inputs`` get a context whose ``config`` is the stage's view (:class:`ConfigView`),
    so that the context's own helpers (seeds to replay, the starting checkpoint, ...) cannot read an
    undeclared field either.
    """

    name: str
    notebook: str  # under notebooks/
    upstream: Stage | None  # the stage whose result this one reads (its fingerprint enters this one's)
    config: type[C]  # the configuration fields the stage reads
    result: type[R]
    inputs: Inputs  # the stage's own inputs beyond config, notebook, forge version and upstream
    work: Work
    writes_under: Callable[[Workspace, int], Path]  # named when a library's write fails without a file name
    intact: Intact = always_intact
    #: While this stage runs, the loop may solve the next iteration's deals in the background (prefetch_next).
    prefetch_alongside: bool = False
    #: The iteration a notebook of this stage opens when none is given (None: the one in progress, or the next).
    default_iteration: Callable[[Workspace, State], int | None] | None = None
    #: For a stage whose result holds golden-set content: pin it in the state, or check it against the pin
    #: (forge.flywheel.integrity); returns a note for the user, raises IntegrityError on a mismatch.
    pin_golden: Callable[[Workspace, State, R], str | None] | None = None

    def __post_init__(self) -> None:
        type.__setattr__(self.config, "stage", self.name)

    def view(self, config: Config) -> C:
        return self.config(config)

    def path(self, ws: Workspace, iteration: int) -> Path:
        return ws.results(iteration) / f"{self.name}.json"

    def read(self, ws: Workspace, iteration: int) -> R | None:
        """The recorded result; None if there is none or it is damaged (the stage then runs again)."""
        try:
            return self.result.from_json(self.path(ws, iteration).read_text())
        except (OSError, ValueError, ValidationError):
            return None

    def write(self, ws: Workspace, iteration: int, result: R) -> Path:
        """Record the stage's result atomically."""
        return atomic_write_text(self.path(ws, iteration), result.to_json())

    def __repr__(self) -> str:
        return f"Stage({self.name!r})"

