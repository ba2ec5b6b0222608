"""A pydantic validation failure as the one line a user reads: the first problem, named by its place in
the file (``config.training.lr must be at most 1e+12, got 1e+300``)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def _show(bound: Any) -> str:
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        return repr(bound)
    return f"{bound:,}" if isinstance(bound, int) else f"{bound:g}"


def _place(loc: tuple[int | str, ...], prefix: str) -> str:
    where = prefix
    for part in loc:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part in ("int", "float", "str", "bool") or part.startswith(("literal[", "function-", "constrained-")):
            continue  # pydantic's name for a branch of a union, not a place in the file
        else:
            where = f"{where}.{part}" if where else str(part)
    return where


def _says(error: dict[str, Any]) -> str | None:
    """What is wrong, for the kinds of problem a user makes in a file; None for another kind."""
    kind, ctx = error["type"], error.get("ctx") or {}
    got = f", got {error['input']!r}" if "input" in error else ""
    match kind:
        case "missing" | "missing_argument":
            return "is missing"
        case "extra_forbidden" | "unexpected_keyword_argument":
            return "is not a known field"
        case "greater_than_equal":
            return f"must be at least {_show(ctx['ge'])}{got}"
        case "greater_than":
            return f"must be greater than {_show(ctx['gt'])}{got}"
        case "less_than_equal":
            return f"must be at most {_show(ctx['le'])}{got}"
        case "less_than":
            return f"must be less than {_show(ctx['lt'])}{got}"
        case "int_type" | "int_from_float" | "int_parsing":
            return f"must be an integer{got}"
        case "finite_number":
            return f"must be a finite number{got}"
        case "bool_type" | "bool_parsing":
            return f"must be true or false{got}"
        case "literal_error":
            return f"must be one of {ctx['expected'].replace(' or ', ', ').replace(chr(39), '')}{got}"
        case "string_pattern_mismatch":
            return f"must be a name such as auto, cpu, gpu or ddp (lower-case letters, digits, _){got}"
        case "too_short":
            return "must not be empty"
        case "dict_type" | "model_type" | "model_attributes_type" | "dataclass_type":
            return f"must be a mapping{got}"
        case "list_type":
            return f"must be a list{got}"
    return None


def first_problem(err: ValidationError, prefix: str = "") -> str:
    """The first of ``err``'s problems as one line, its place in the file under ``prefix`` (``config``,
    ``history``): ``config.training.lr must be at most 1e+12, got 1e+300``."""
    error = err.errors(include_url=False)[0]
    where = _place(tuple(error["loc"]), prefix)
    says = _says(error)
    if says is not None:
        return f"{where or 'value'} {says}"
    msg = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    head = where.split("[")[0].split(".")[0]
    if not where or (head and msg.split(" ")[0].startswith(head)):
        return msg  # a rule across fields, or our own validator naming the field itself (wandb.mode, ...)
    msg = msg[0].lower() + msg[1:]
    if ", got " in msg or error["type"] in ("value_error", "assertion_error"):
        return f"{where}: {msg}"
    got = error.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) or len(repr(got)) < 80 else type(got).__name__
    return f"{where}: {msg}, got {shown}"
