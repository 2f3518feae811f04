"""Contract YAML -> validated, typed terms.

A contract is accepted or rejected in full. Shape and types are checked by pydantic models (unknown
keys are errors, so a typo never silently drops a term); the rules that span keys (bands in order,
allocations within the pool, ids that exist) are checked afterwards with explicit key paths. Every
error names the file, the key path and the reason, e.g.
`contracts_config/acme.yaml: service_lines[0].pricing[0].bands[2]: up_to 80000 is not above the
previous band's 80000`.

The YAML itself is read by `yaml_strict` (duplicate keys, aliases, deep nesting, non-UTF-8 bytes
and non-regular files are refused there). Numbers arrive as `Decimal` read from their literal text:
`2.40` never passes through a float. Defaults that depend on other keys (a fee's start, a pricing
entry's itemisation, the monthly cap, ...) are resolved here, once, by `_resolve_defaults`:
`terms.py` only maps the resolved terms to tables.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import re
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .errors import SettleError
from .money import CONFIG_SCALE, MAX_AMOUNT_SCALE, MAX_FACTOR_SCALE, MAX_RATE_SCALE, ZERO
from .periods import parse_period
from .yaml_strict import YamlError, decode, loads, read_bytes

# Config numbers land in DECIMAL(20, 6) term tables (terms.py): 14 digits before the point.
MAX_CONFIG_DIGITS = 14
# The day before any contract could start: entries without `agreed_on` were always known.
ALWAYS_KNOWN = dt.date(1900, 1, 1)


class ConfigError(SettleError):
    """A contract file that cannot be settled: file, key path and reason."""

    def __init__(self, file: str, path: str, reason: str):
        if len(reason) > 400:  # one paragraph, whatever value the reason quotes
            reason = reason[:300] + " ... " + reason[-60:]
        if len(path) > 200:
            path = path[:150] + "..." + path[-40:]
        self.file, self.path, self.reason = file, path, reason
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + reason)


# --------------------------------------------------------------------------- field types


def _show(value: Any, quote: bool = True) -> str:
    """A value quoted in an error, cut short: the error is one paragraph, whatever the input."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= 60 else text[:50] + "..." + text[-6:]


def _to_period(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value.replace(day=1)
    try:
        return parse_period(str(value))
    except ValueError:
        raise ValueError(f"{_show(value)} is not a month (YYYY-MM)") from None


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    text = str(value)
    if re.fullmatch(r"\d{4}-\d{2}", text):
        return parse_period(text)
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{_show(text)} is not a date (YYYY-MM-DD)") from exc


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, float):
        raise ValueError("floats are not accepted for money; write the number in the YAML")
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.replace("_", ""))
        except (ValueError, InvalidOperation):
            raise ValueError(f"{_show(value)} is not a number") from None
    else:
        raise ValueError(f"expected a number, got {type(value).__name__}")
    if not number.is_finite():
        raise ValueError(f"{_show(value, quote=False)} is not a finite number")
    if number.as_tuple().exponent < -CONFIG_SCALE:  # type: ignore[operator]
        raise ValueError(f"{_show(value, quote=False)} has more than {CONFIG_SCALE} decimal places")
    if number and number.adjusted() >= MAX_CONFIG_DIGITS:
        raise ValueError(
            f"{_show(value, quote=False)} is too large: contract numbers have at most "
            f"{MAX_CONFIG_DIGITS} digits before the decimal point"
        )
    return number


Period = Annotated[dt.date, BeforeValidator(_to_period)]
Date = Annotated[dt.date, BeforeValidator(_to_date)]
Dec = Annotated[Decimal, BeforeValidator(_to_decimal)]
Id = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=80)]
# `true` or `false` only: pydantic would otherwise read "yes", "off", 1 or "0" as booleans.
Flag = Annotated[bool, Field(strict=True)]
# Seconds: at most a day, which keeps every threshold far inside INT32 and microsecond arithmetic.
Seconds = Annotated[int, Field(ge=0, le=86_400)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dated(Strict):
    """An effective-dated entry: in force from `effective_from` once `agreed_on` is known."""

    effective_from: Period
    agreed_on: Date | None = None
    reason: str | None = None


# --------------------------------------------------------------------------- sections


class Rounding(Strict):
    mode: Literal["half_up", "half_even"] = "half_up"
    amount_scale: int = Field(2, ge=0, le=MAX_AMOUNT_SCALE)
    rate_scale: int = Field(4, ge=0, le=MAX_RATE_SCALE)


class Reconciliation(Strict):
    tolerance_abs: Dec = Field(ZERO, ge=0)
    tolerance_pct: Dec = Field(ZERO, ge=0)


class Band(Strict):
    up_to: Dec | None = Field(None, gt=0)
    rate: Dec = Field(ZERO, ge=0)
    flat_fee: Dec = Field(ZERO, ge=0)


class Surge(Strict):
    over_forecast_pct: Dec = Field(ge=0)
    rate: Dec = Field(ge=0)


class Pricing(Dated):
    model: Literal["per_unit", "graduated", "volume", "stairstep", "package"]
    bands: list[Band] = Field(default_factory=list)
    package_size: Dec | None = Field(None, gt=0)
    package_price: Dec | None = Field(None, ge=0)
    minimum_units: Dec | None = Field(None, ge=0)
    minimum_charge: Dec | None = Field(None, ge=0)
    maximum_charge: Dec | None = Field(None, ge=0)
    surge: Surge | None = None
    itemise_bands: Flag | None = None


class Commitment(Dated):
    """A minimum over a window longer than a month, trued up in the window's last month."""

    over: Literal["contract_year", "calendar_year", "quarter"]
    minimum_units: Dec | None = Field(None, gt=0)
    minimum_charge: Dec | None = Field(None, gt=0)


class ServiceLine(Strict):
    id: Id
    description: str | None = None
    unit: Literal["contact", "minute", "hour", "fte", "transaction"] = "contact"
    itemise_bands: Flag = False
    pricing: list[Pricing] = Field(min_length=1)
    commitments: list[Commitment] = Field(default_factory=list)


class FixedFee(Strict):
    id: Id
    description: str | None = None
    amount: Dec = Field(ge=0)
    indexed: Flag = False
    effective_from: Period | None = None
    agreed_on: Date | None = None
    reason: str | None = None


class BasketItem(Strict):
    index_id: Id
    weight: Dec = Field(gt=0, le=1)


class Indexation(Strict):
    index_id: Id | None = None
    basket: list[BasketItem] | None = None
    base_period: Period
    first_review: Period
    review_every_months: int = Field(12, ge=1, le=120)
    lag_months: int = Field(0, ge=0, le=24)
    cap: Dec | None = None
    floor: Dec | None = None
    indexed_share: Dec | None = Field(None, ge=0, le=1)
    factor_scale: int = Field(6, ge=0, le=MAX_FACTOR_SCALE)
    applies_to: list[Id] | None = None
    method: Literal["chained", "base_relative"] = "chained"


class Target(Dated):
    value: Dec


class CreditBand(Strict):
    worse_than: Dec
    pct: Dec = Field(ge=0, le=1)


class PointsBand(Strict):
    worse_than: Dec
    points: Dec = Field(ge=0)


class Credit(Strict):
    model: Literal["binary", "linear", "bands"] = "binary"
    bands: list[CreditBand] | None = None


class Bonus(Strict):
    at_or_better: Dec
    pct_of_charges: Dec = Field(ge=0, le=1)


class Measure(Strict):
    metric: Literal["service_level", "abandon_rate", "asa_s", "aht_s", "fcr", "csat"]
    service_line: Id
    threshold_s: Seconds | None = None
    abandons: Literal[
        "ignore", "count_as_failed", "count_as_met", "exclude_short", "exclude_within_threshold"
    ] = "ignore"
    short_abandon_s: Seconds | None = None
    csat_top_box: int | None = Field(None, ge=1, le=10)


class Kpi(Strict):
    id: Id
    description: str | None = None
    direction: Literal["higher_is_better", "lower_is_better"] = "higher_is_better"
    target: list[Target]
    minimum: Dec | None = None
    allocation_pct: Dec | None = Field(None, ge=0)
    credit: Credit = Credit()
    points_bands: list[PointsBand] | None = None
    repeat_multiplier: Dec = Field(Decimal(1), ge=1)
    earn_back_months: int | None = Field(None, ge=1, le=36)
    bonus: Bonus | None = None
    critical_below: Dec | None = None
    no_data: Literal["no_data", "fail"] = "no_data"
    required: Flag = False
    measure: Measure | None = None
    # what the KPI's input values are, which bounds them (inputs.KPI_KINDS); see value_kind
    kind: Literal["share", "seconds", "count", "score"] | None = None

    @property
    def value_kind(self) -> str:
        """The kind given, else share when every target lies in [0, 1], else score."""
        if self.kind:
            return self.kind
        return "share" if all(0 <= t.value <= 1 for t in self.target) else "score"


class PointsStep(Strict):
    from_points: Dec = Field(ge=0)
    pct: Dec = Field(ge=0, le=1)


class ServiceCredits(Strict):
    regime: Literal["at_risk_pool", "points"] = "at_risk_pool"
    at_risk_pct: Dec | None = Field(None, ge=0, le=1)
    pool_pct: Dec = Field(Decimal(1), ge=0)
    monthly_cap_pct: Dec | None = Field(None, ge=0, le=1)
    annual_cap_pct: Dec | None = Field(None, ge=0, le=1)
    annual_cap_amount: Dec | None = Field(None, ge=0)
    points_to_credit_pct: list[PointsStep] | None = None
    kpis: list[Kpi] = Field(default_factory=list)


class Baseline(Dated):
    value: Dec = Field(ge=0)


class Tier(Strict):
    up_to: Dec | None = Field(None, gt=0)
    provider_share: Dec = Field(ge=0, le=1)


class GainShare(Strict):
    scope: list[Id] = Field(min_length=1)
    measure: Literal["unit_cost", "total_cost", "volume"] = "unit_cost"
    baselines: list[Baseline] = Field(min_length=1)
    baseline_indexed: Flag = False
    value_per_unit: Dec | None = Field(None, ge=0)
    settle_every: Literal["month", "quarter", "year"] = "quarter"
    threshold_pct: Dec = Field(ZERO, ge=0, le=1)
    tiers: list[Tier] = Field(min_length=1)
    pain_share: Flag = False
    pain_tiers: list[Tier] | None = None
    cap: Dec | None = Field(None, ge=0)
    gates: list[Id] = Field(default_factory=list)


class PassThrough(Strict):
    """Costs the provider passes on at cost plus a margin, from the pass_through/ input."""

    id: Id
    description: str | None = None
    margin_pct: Dec = Field(ZERO, ge=0, le=10)
    in_charges: bool = False


class OneOffCharge(Strict):
    """A one-off fee, optionally spread over consecutive monthly instalments."""

    id: Id
    description: str | None = None
    amount: Dec = Field(gt=0)
    first_period: Period
    instalments: int = Field(1, ge=1, le=120)
    indexed: bool = False
    in_charges: bool = False
    agreed_on: Date | None = None
    reason: str | None = None


class FxSharing(Strict):
    """Currency-risk sharing for offshore delivery (SPEC 10)."""

    delivery_currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    base_rate: Dec = Field(gt=0)
    band_pct: Dec = Field(ZERO, ge=0, le=1)
    client_share: Dec = Field(ge=0, le=1)
    lag_months: int = Field(0, ge=0, le=24)
    applies_to: list[Id] | None = None


# Line types an invoice can carry; the journal posts each to an account (SPEC 7 and 11).
LINE_TYPES = (
    "usage",
    "fixed_fee",
    "minimum",
    "surge",
    "credit",
    "earn_back",
    "bonus",
    "gain_share",
    "adjustment",
    "true_up",
    "credit_cap_refund",
    "pass_through",
    "one_off",
    "fx_share",
)
Account = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]


class Accounting(Strict):
    """Where the journal export posts each line type (SPEC 11); `default` catches the rest."""

    supplier_id: Account | None = None
    cost_centre: Account | None = None
    accounts: dict[str, Account] = Field(min_length=1)


class Contract(Strict):
    contract_id: Id
    client: str | None = None
    provider: str | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    start: Period
    end: Period | None = None
    rounding: Rounding = Rounding()
    reconciliation: Reconciliation = Reconciliation()
    service_lines: list[ServiceLine] = Field(min_length=1)
    fixed_fees: list[FixedFee] = Field(default_factory=list)
    indexation: Indexation | None = None
    service_credits: ServiceCredits | None = None
    gain_share: GainShare | None = None
    contract_year_start: Period | None = None
    pass_through: list[PassThrough] = Field(default_factory=list)
    one_off_charges: list[OneOffCharge] = Field(default_factory=list)
    fx_sharing: FxSharing | None = None
    accounting: Accounting | None = None


class LoadedContract(BaseModel):
    """A validated contract with where it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    file: str
    sha256: str
    yaml_text: str
    terms: Contract

    @property
    def contract_id(self) -> str:
        return self.terms.contract_id


# --------------------------------------------------------------------------- loading


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _normalise_targets(raw: dict[str, Any]) -> None:
    """`target: 0.80` is shorthand for one entry in force from the contract start."""
    credits = raw.get("service_credits")
    if not isinstance(credits, dict):
        return
    kpis = credits.get("kpis")
    for kpi in kpis if isinstance(kpis, list) else []:  # anything else: pydantic names the key
        if isinstance(kpi, dict) and not isinstance(kpi.get("target"), list | type(None)):
            kpi["target"] = [{"effective_from": raw.get("start"), "value": kpi["target"]}]


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model that holds the key at `loc` (list indices skipped), if any."""
    model: type[BaseModel] = Contract
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        pending, found = [field.annotation], None
        while pending and found is None:
            kind = pending.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                found = kind
            else:
                pending.extend(get_args(kind))
        if found is None:
            return None
        model = found
    return model


def _unknown_key(loc: tuple[Any, ...]) -> str:
    key = str(loc[-1]) if loc else ""
    model = _model_at(loc)
    known = sorted(model.model_fields) if model else []
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean {close[0]}?" if close else f"this section takes {', '.join(known)}"
    return f"unknown key {key!r} ({hint})" if known else f"unknown key {key!r}"


def _pydantic_reason(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return _unknown_key(tuple(err.get("loc", ())))
    if kind == "missing":
        return "required key is missing"
    msg = err.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    value = err.get("input")
    if kind.startswith(("literal", "enum")) or "greater" in kind or "less" in kind:
        return f"{_show(value)}: {msg}"
    return msg


def load_contract(path: Path, root: Path | None = None) -> LoadedContract:
    name = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
    try:
        data = read_bytes(path)
        text = decode(data)
        raw = loads(text)
    except YamlError as exc:
        raise ConfigError(name, exc.path, exc.reason) from None
    if not isinstance(raw, dict):
        raise ConfigError(name, "", "a contract file must be a mapping of keys")
    _normalise_targets(raw)
    try:
        terms = Contract.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(name, _key_path(first["loc"]), _pydantic_reason(first)) from None
    terms = _resolve_defaults(terms)
    check_rules(terms, name)
    return LoadedContract(
        file=name,
        sha256=hashlib.sha256(data).hexdigest(),
        yaml_text=text,
        terms=terms,
    )


def _note_on_stderr(message: str) -> None:
    print(message, file=sys.stderr)  # with the progress lines: stdout carries results only


def load_contracts(
    directory: Path,
    only: set[str] | None = None,
    note: Callable[[str], None] | None = None,
    load: Callable[[Path, Path], LoadedContract] | None = None,
) -> list[LoadedContract]:
    """Every `*.yaml` / `*.yml` in the folder, validated; fails on the first bad file.

    Hidden files (`.#acme.yaml` is an editor's lock file, `._acme.yaml` a macOS resource fork) are
    skipped with a note. Any other entry that is not a regular file (a directory, a FIFO, a dangling
    symlink) is an error: skipping it could silently drop a contract from the invoices. `load`
    reads one file (`pipelines.contract_cache` puts its cache in front of `load_contract`)."""
    if not directory.is_dir():
        raise SettleError(f"{directory}: contracts folder not found")
    found = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    files = [f for f in found if not f.name.startswith(".")]
    root = directory.parent
    for skipped in sorted(set(found) - set(files)):
        shown = skipped.relative_to(root)
        (note or _note_on_stderr)(f"note: skipping hidden file {shown} (not read as a contract)")
    if not files:
        raise SettleError(f"{directory}: no contract files (*.yaml) found")
    contracts = [(load or load_contract)(f, root) for f in files]
    seen: dict[str, str] = {}
    for c in contracts:
        if c.contract_id in seen:
            raise ConfigError(
                c.file,
                "contract_id",
                f"{c.contract_id} is already defined in {seen[c.contract_id]}",
            )
        seen[c.contract_id] = c.file
    if only:
        unknown = sorted(only - set(seen))
        if unknown:
            raise SettleError(
                f"unknown contract id(s): {', '.join(unknown)}; known: {sorted(seen)}"
            )
        contracts = [c for c in contracts if c.contract_id in only]
    return contracts


# --------------------------------------------------------------------------- defaults


def _resolve_defaults(c: Contract) -> Contract:
    """Fill every default that depends on another key, so the terms say what is settled.

    After this, no consumer needs a fallback: descriptions default to the id, `agreed_on` to
    ALWAYS_KNOWN, a fee's `effective_from` to the contract start, a pricing entry's
    `itemise_bands` to its service line's, `indexation.applies_to` to every service line and every
    fee marked `indexed`, a single index's `indexed_share` to 1, `monthly_cap_pct` to
    `at_risk_pct`, `pain_tiers` to `tiers`, `contract_year_start` to `start` and
    `fx_sharing.applies_to` to every service line."""

    def dated(entry: Any, **more: Any) -> Any:
        if entry.agreed_on is None:
            more["agreed_on"] = ALWAYS_KNOWN
        return entry.model_copy(update=more) if more else entry

    lines = [
        sl.model_copy(
            update={
                "description": sl.description or sl.id,
                "pricing": [
                    dated(
                        p,
                        **({"itemise_bands": sl.itemise_bands} if p.itemise_bands is None else {}),
                    )
                    for p in sl.pricing
                ],
                "commitments": [dated(cm) for cm in sl.commitments],
            }
        )
        for sl in c.service_lines
    ]
    fees = [
        dated(f, description=f.description or f.id, effective_from=f.effective_from or c.start)
        for f in c.fixed_fees
    ]
    update: dict[str, Any] = {"service_lines": lines, "fixed_fees": fees}
    ix = c.indexation
    if ix is not None:
        ix_update: dict[str, Any] = {}
        if ix.applies_to is None:
            every = [sl.id for sl in c.service_lines] + [f.id for f in c.fixed_fees if f.indexed]
            ix_update["applies_to"] = list(dict.fromkeys(every))
        if ix.basket is None and ix.indexed_share is None:
            ix_update["indexed_share"] = Decimal(1)
        update["indexation"] = ix.model_copy(update=ix_update)
    sc = c.service_credits
    if sc is not None:
        kpis = [
            k.model_copy(
                update={
                    "description": k.description or k.id,
                    "target": [dated(t) for t in k.target],
                }
            )
            for k in sc.kpis
        ]
        cap = sc.monthly_cap_pct if sc.monthly_cap_pct is not None else sc.at_risk_pct
        update["service_credits"] = sc.model_copy(update={"kpis": kpis, "monthly_cap_pct": cap})
    gs = c.gain_share
    if gs is not None:
        update["gain_share"] = gs.model_copy(
            update={
                "baselines": [dated(b) for b in gs.baselines],
                "pain_tiers": gs.pain_tiers if gs.pain_tiers is not None else gs.tiers,
            }
        )
    update["contract_year_start"] = c.contract_year_start or c.start
    update["pass_through"] = [
        p.model_copy(update={"description": p.description or p.id}) for p in c.pass_through
    ]
    update["one_off_charges"] = [
        dated(o, description=o.description or o.id) for o in c.one_off_charges
    ]
    fx = c.fx_sharing
    if fx is not None and fx.applies_to is None:
        every_line = [sl.id for sl in c.service_lines]
        update["fx_sharing"] = fx.model_copy(update={"applies_to": every_line})
    return c.model_copy(update=update)


# --------------------------------------------------------------------------- cross-key rules


def _fmt(value: Decimal | None) -> str:
    return "none" if value is None else format(value.normalize(), "f")


def _check_dated(entries: list[Any], path: str, file: str, start: dt.date) -> None:
    for i in range(1, len(entries)):
        prev, cur = entries[i - 1].effective_from, entries[i].effective_from
        if cur <= prev:
            raise ConfigError(
                file,
                f"{path}[{i}].effective_from",
                f"{cur:%Y-%m} is not after the previous entry's {prev:%Y-%m}",
            )
    if entries and entries[0].effective_from > start:
        raise ConfigError(
            file,
            f"{path}[0].effective_from",
            f"{entries[0].effective_from:%Y-%m} is after the contract start {start:%Y-%m}: "
            "the months before it would have no term in force",
        )


def _check_ladder(items: list[Any], path: str, file: str, what: str) -> None:
    """Bands or tiers: up_to strictly increasing, only the last one open-ended."""
    for i, item in enumerate(items):
        last = i == len(items) - 1
        if item.up_to is None and not last:
            raise ConfigError(
                file, f"{path}[{i}].up_to", f"only the last {what} may be open-ended (no up_to)"
            )
        if item.up_to is not None and last:
            raise ConfigError(
                file,
                f"{path}[{i}].up_to",
                f"the last {what} must be open-ended (no up_to), got {_fmt(item.up_to)}",
            )
        previous = items[i - 1].up_to if i else None
        if item.up_to is not None and previous is not None and item.up_to <= previous:
            raise ConfigError(
                file,
                f"{path}[{i}]",
                f"up_to {_fmt(item.up_to)} is not above the previous {what}'s "
                f"{_fmt(items[i - 1].up_to)}",
            )


def _check_pricing(p: Pricing, path: str, file: str) -> None:
    if p.model == "package":
        if p.package_size is None or p.package_price is None:
            raise ConfigError(file, path, "model package needs package_size and package_price")
        if p.bands:
            raise ConfigError(file, f"{path}.bands", "model package takes no bands")
        if p.minimum_units is not None:
            raise ConfigError(
                file,
                f"{path}.minimum_units",
                "a package line has no unit rate to bill a shortfall at",
            )
    else:
        if p.package_size is not None or p.package_price is not None:
            raise ConfigError(file, path, "package_size/package_price only apply to model package")
        if not p.bands:
            raise ConfigError(file, f"{path}.bands", f"model {p.model} needs at least one band")
        if p.model == "per_unit" and (len(p.bands) != 1 or p.bands[0].up_to is not None):
            raise ConfigError(
                file, f"{path}.bands", "model per_unit takes exactly one band, no up_to"
            )
        _check_ladder(p.bands, f"{path}.bands", file, "band")
    floor, ceiling = p.minimum_charge, p.maximum_charge
    if floor is not None and ceiling is not None and floor > ceiling:
        raise ConfigError(
            file,
            f"{path}.minimum_charge",
            f"{_fmt(p.minimum_charge)} is above maximum_charge {_fmt(p.maximum_charge)}",
        )
    if p.maximum_charge is not None and p.itemise_bands:
        # itemise_bands is resolved from the service line when the entry does not set it
        raise ConfigError(
            file,
            f"{path}.maximum_charge",
            "a capped line cannot be itemised per band (itemise_bands: true)",
        )
    if p.surge is not None and p.model == "stairstep":
        raise ConfigError(file, f"{path}.surge", "a stairstep line has no unit rate to surge")


def _is_worse(direction: str, a: Decimal, b: Decimal) -> bool:
    return a < b if direction == "higher_is_better" else a > b


def _check_kpi(k: Kpi, path: str, file: str, c: Contract, regime: str) -> None:
    _check_dated(k.target, f"{path}.target", file, c.start)
    targets = [t.value for t in k.target]
    worse = "below" if k.direction == "higher_is_better" else "above"
    if regime == "at_risk_pool":
        if k.allocation_pct is None:
            raise ConfigError(file, f"{path}.allocation_pct", "required in the at_risk_pool regime")
        if k.credit.model == "linear":
            if k.minimum is None:
                raise ConfigError(file, f"{path}.minimum", "the linear credit model needs minimum")
            for t in targets:
                if not _is_worse(k.direction, k.minimum, t):
                    raise ConfigError(
                        file,
                        f"{path}.minimum",
                        f"{_fmt(k.minimum)} must be {worse} every target ({_fmt(t)}) "
                        f"for a {k.direction} KPI",
                    )
        if k.credit.model == "bands":
            if not k.credit.bands:
                raise ConfigError(
                    file, f"{path}.credit.bands", "the bands credit model needs bands"
                )
            _check_worse_ladder(k.credit.bands, f"{path}.credit.bands", file, k.direction)
        elif k.credit.bands:
            raise ConfigError(file, f"{path}.credit.bands", "bands need credit model bands")
    else:
        if not k.points_bands:
            raise ConfigError(file, f"{path}.points_bands", "required in the points regime")
        _check_worse_ladder(k.points_bands, f"{path}.points_bands", file, k.direction)
    if k.bonus is not None:
        for t in targets:
            if _is_worse(k.direction, k.bonus.at_or_better, t):
                raise ConfigError(
                    file,
                    f"{path}.bonus.at_or_better",
                    f"{_fmt(k.bonus.at_or_better)} is worse than the target {_fmt(t)}",
                )
    if k.measure is not None:
        m = k.measure
        if m.service_line not in {s.id for s in c.service_lines}:
            raise ConfigError(
                file, f"{path}.measure.service_line", f"{m.service_line} is not a service line"
            )
        if m.metric == "service_level" and m.threshold_s is None:
            raise ConfigError(
                file, f"{path}.measure.threshold_s", "service_level needs threshold_s"
            )
        needs_short = m.abandons == "exclude_short"
        if needs_short and m.short_abandon_s is None:
            raise ConfigError(
                file, f"{path}.measure.short_abandon_s", "abandons: exclude_short needs it"
            )


def _check_worse_ladder(bands: list[Any], path: str, file: str, direction: str) -> None:
    for i in range(1, len(bands)):
        if not _is_worse(direction, bands[i].worse_than, bands[i - 1].worse_than):
            raise ConfigError(
                file,
                f"{path}[{i}].worse_than",
                f"{_fmt(bands[i].worse_than)} must be worse than the previous band's "
                f"{_fmt(bands[i - 1].worse_than)} ({direction}): bands go from mild to severe",
            )


def check_rules(c: Contract, file: str) -> None:
    if c.end is not None and c.end < c.start:
        raise ConfigError(file, "end", f"{c.end:%Y-%m} is before start {c.start:%Y-%m}")
    line_ids = [s.id for s in c.service_lines]
    fee_ids = [f.id for f in c.fixed_fees]
    _unique(line_ids, "service_lines", file)
    for i, sl in enumerate(c.service_lines):
        _check_dated(sl.pricing, f"service_lines[{i}].pricing", file, c.start)
        for j, p in enumerate(sl.pricing):
            _check_pricing(p, f"service_lines[{i}].pricing[{j}]", file)
    for i, fee in enumerate(c.fixed_fees):
        if fee.effective_from is not None and fee.effective_from < c.start:
            raise ConfigError(
                file, f"fixed_fees[{i}].effective_from", "is before the contract start"
            )
    _check_fee_history(c, file)
    if set(line_ids) & set(fee_ids):
        raise ConfigError(
            file,
            "fixed_fees",
            f"ids shared with service lines: {sorted(set(line_ids) & set(fee_ids))}",
        )
    if c.indexation is not None:
        _check_indexation(c.indexation, file, set(line_ids), set(fee_ids))
    if c.service_credits is not None:
        sc = c.service_credits
        _unique([k.id for k in sc.kpis], "service_credits.kpis", file)
        for i, k in enumerate(sc.kpis):
            _check_kpi(k, f"service_credits.kpis[{i}]", file, c, sc.regime)
        if sc.regime == "at_risk_pool":
            if sc.kpis and sc.at_risk_pct is None:
                raise ConfigError(file, "service_credits.at_risk_pct", "required in at_risk_pool")
            total = sum((k.allocation_pct or ZERO for k in sc.kpis), ZERO)
            if total > sc.pool_pct:
                raise ConfigError(
                    file,
                    "service_credits.kpis",
                    f"allocation_pct adds up to {_fmt(total)}, above pool_pct {_fmt(sc.pool_pct)}",
                )
        else:
            steps = sc.points_to_credit_pct
            if not steps:
                raise ConfigError(
                    file, "service_credits.points_to_credit_pct", "required in the points regime"
                )
            for i in range(1, len(steps)):
                if steps[i].from_points <= steps[i - 1].from_points:
                    raise ConfigError(
                        file,
                        f"service_credits.points_to_credit_pct[{i}].from_points",
                        f"{_fmt(steps[i].from_points)} is not above the previous "
                        f"{_fmt(steps[i - 1].from_points)}",
                    )
    if c.gain_share is not None:
        _check_gain_share(c, file, set(line_ids), set(fee_ids))
    _check_beyond_the_month(c, file, line_ids, fee_ids)
    if c.accounting is not None:
        for key, account in c.accounting.accounts.items():
            if key != "default" and key not in LINE_TYPES:
                raise ConfigError(
                    file,
                    f"accounting.accounts.{key}",
                    f"not a line type; use one of {', '.join(LINE_TYPES)} or default",
                )
            if not account.strip():
                raise ConfigError(file, f"accounting.accounts.{key}", "the account is empty")


def _check_fee_history(c: Contract, file: str) -> None:
    by_id: dict[str, list[tuple[int, FixedFee]]] = {}
    for i, fee in enumerate(c.fixed_fees):
        by_id.setdefault(fee.id, []).append((i, fee))
    for fee_id, entries in by_id.items():
        for (_, prev), (i, fee) in zip(entries, entries[1:], strict=False):
            assert prev.effective_from is not None and fee.effective_from is not None
            if fee.effective_from == prev.effective_from:
                raise ConfigError(
                    file,
                    f"fixed_fees[{i}]",
                    f"{fee_id} has two entries in force from the same month; "
                    "give each its own effective_from",
                )
            if fee.effective_from < prev.effective_from:
                raise ConfigError(
                    file,
                    f"fixed_fees[{i}].effective_from",
                    f"{fee.effective_from:%Y-%m} is not after the previous {fee_id} entry's "
                    f"{prev.effective_from:%Y-%m}: dated entries are in increasing order",
                )


def _check_indexation(ix: Indexation, file: str, lines: set[str], fees: set[str]) -> None:
    if (ix.index_id is None) == (ix.basket is None):
        raise ConfigError(file, "indexation", "give either index_id or basket, not both/neither")
    if ix.basket is not None:
        if ix.indexed_share is not None:
            raise ConfigError(
                file,
                "indexation.indexed_share",
                "a basket sets its own weights; the fixed part is 1 - sum(weight)",
            )
        total = sum((b.weight for b in ix.basket), ZERO)
        if total > 1:
            raise ConfigError(
                file, "indexation.basket", f"weights add up to {_fmt(total)}, above 1"
            )
        _unique([b.index_id for b in ix.basket], "indexation.basket", file, key="index_id")
    if ix.first_review <= ix.base_period:
        raise ConfigError(
            file, "indexation.first_review", "must be after base_period (the prices' index month)"
        )
    if ix.cap is not None and ix.floor is not None and ix.floor > ix.cap:
        raise ConfigError(file, "indexation.floor", f"{_fmt(ix.floor)} is above cap {_fmt(ix.cap)}")
    _unique(ix.applies_to or [], "indexation.applies_to", file, key=None)
    for i, item in enumerate(ix.applies_to or []):
        if item not in lines | fees:
            raise ConfigError(
                file,
                f"indexation.applies_to[{i}]",
                f"{item} is neither a service line nor a fixed fee of this contract",
            )


def _check_gain_share(c: Contract, file: str, lines: set[str], fees: set[str]) -> None:
    gs = c.gain_share
    assert gs is not None
    _unique(gs.scope, "gain_share.scope", file, key=None)
    _unique(gs.gates, "gain_share.gates", file, key=None)
    for i, item in enumerate(gs.scope):
        if item not in lines | fees:
            raise ConfigError(
                file,
                f"gain_share.scope[{i}]",
                f"{item} is neither a service line nor a fixed fee of this contract",
            )
    _check_dated(gs.baselines, "gain_share.baselines", file, c.start)
    _check_ladder(gs.tiers, "gain_share.tiers", file, "tier")
    if gs.pain_tiers is not None:
        _check_ladder(gs.pain_tiers, "gain_share.pain_tiers", file, "tier")
    if gs.measure == "volume" and gs.value_per_unit is None:
        raise ConfigError(file, "gain_share.value_per_unit", "measure volume needs value_per_unit")
    if gs.measure != "volume" and gs.value_per_unit is not None:
        raise ConfigError(file, "gain_share.value_per_unit", "only applies to measure volume")
    kpi_ids = {k.id for k in (c.service_credits.kpis if c.service_credits else [])}
    for i, gate in enumerate(gs.gates):
        if gate not in kpi_ids:
            raise ConfigError(
                file, f"gain_share.gates[{i}]", f"{gate} is not a KPI of this contract"
            )


def _unique(ids: list[str], path: str, file: str, key: str | None = "id") -> None:
    """An id listed twice would count its item twice (scope, applies_to) or is a typo."""
    seen: dict[str, int] = {}
    for i, item in enumerate(ids):
        if item in seen:
            where = f"{path}[{i}].{key}" if key else f"{path}[{i}]"
            raise ConfigError(file, where, f"{item} appears twice (first at {path}[{seen[item]}])")
        seen[item] = i


def _in_term(c: Contract, month: dt.date) -> bool:
    return c.start <= month and (c.end is None or month <= c.end)


def _check_beyond_the_month(c: Contract, file: str, line_ids: list[str], fee_ids: list[str]):
    """SPEC 10: commitments, annual caps, pass-through, one-off charges, FX sharing."""
    if c.contract_year_start is not None and not _in_term(c, c.contract_year_start):
        raise ConfigError(file, "contract_year_start", "lies outside the contract's term")
    for i, sl in enumerate(c.service_lines):
        path = f"service_lines[{i}].commitments"
        _check_dated(sl.commitments, path, file, c.start)
        for j, cm in enumerate(sl.commitments):
            if (cm.minimum_units is None) == (cm.minimum_charge is None):
                raise ConfigError(
                    file, f"{path}[{j}]", "give exactly one of minimum_units and minimum_charge"
                )
            if cm.minimum_units is not None and any(p.model == "package" for p in sl.pricing):
                raise ConfigError(
                    file,
                    f"{path}[{j}].minimum_units",
                    "a package line has no unit rate to bill a shortfall at; use minimum_charge",
                )
        if sl.commitments:
            for j, p in enumerate(sl.pricing):
                if p.minimum_units is not None or p.minimum_charge is not None:
                    raise ConfigError(
                        file,
                        f"service_lines[{i}].pricing[{j}]",
                        "a service line has either a monthly minimum (minimum_units / "
                        "minimum_charge) or commitments, not both",
                    )
    sc = c.service_credits
    has_annual_cap = sc is not None and (
        sc.annual_cap_pct is not None or sc.annual_cap_amount is not None
    )
    if has_annual_cap and not sc.kpis:
        raise ConfigError(file, "service_credits", "an annual cap needs KPIs that credit")
    _unique([p.id for p in c.pass_through], "pass_through", file)
    _unique([o.id for o in c.one_off_charges], "one_off_charges", file)
    taken = set(line_ids) | set(fee_ids)
    for key, items in (("pass_through", c.pass_through), ("one_off_charges", c.one_off_charges)):
        for i, item in enumerate(items):
            if item.id in taken:
                raise ConfigError(file, f"{key}[{i}].id", f"{item.id} is already used by a line")
            taken.add(item.id)
    for i, o in enumerate(c.one_off_charges):
        if not _in_term(c, o.first_period):
            raise ConfigError(
                file, f"one_off_charges[{i}].first_period", "lies outside the contract's term"
            )
        if o.amount.as_tuple().exponent < -c.rounding.amount_scale:
            raise ConfigError(
                file,
                f"one_off_charges[{i}].amount",
                f"{_fmt(o.amount)} has more places than the amount scale {c.rounding.amount_scale}",
            )
        if o.indexed and c.indexation is None:
            raise ConfigError(
                file, f"one_off_charges[{i}].indexed", "the contract has no indexation section"
            )
    fx = c.fx_sharing
    if fx is not None:
        if fx.delivery_currency == c.currency:
            raise ConfigError(
                file, "fx_sharing.delivery_currency", f"is the contract currency {c.currency}"
            )
        if fx.applies_to is not None:
            _unique_list(fx.applies_to, "fx_sharing.applies_to", file)
            for i, item in enumerate(fx.applies_to):
                if item not in line_ids:
                    raise ConfigError(
                        file, f"fx_sharing.applies_to[{i}]", f"{item} is not a service line"
                    )


def _unique_list(ids: list[str], path: str, file: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(ids):
        if item in seen:
            raise ConfigError(file, f"{path}[{i}]", f"{item} is listed twice")
        seen.add(item)
