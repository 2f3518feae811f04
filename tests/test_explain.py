"""`settle explain`: each line type's derivation, read back from the database alone.

One small portfolio is settled once for the module (the month-end story in miniature):
2024-01..2024-03 settled as known on 2024-04-01 and closed, then 2024-04 settled after a gain-share
rebasing (agreed 2024-05-15, effective 2024-03), which restates the closed March and bills the
difference on April. Every figure asserted is worked out by hand in the comment beside it.

Contract T1 (GBP, half_up, 2 places):
    voice       graduated: 0..1,000 at 2.00, above at 1.50; minimum 800 units; surge above
                forecast x 1.10 at 3.00; not indexed
    mgmt        fixed fee 1,000.00, indexed
    indexation  CPI, base 2023-10, first review 2024-03, lag 2, share 0.50, cap 5%, floor 0
    sl          KPI, higher is better, target 0.80, allocation 100%, binary, earn-back after 1
                month, bonus 1% of charges at 0.90 or better; at risk 10% of charges
    gain-share  voice, unit cost, monthly, baseline 2.10 (2.20 from 2024-03, agreed 2024-05-15),
                provider share 50%
Contract T2 (EUR): one per-unit line, claims at 10.00.

The months of T1:
    2024-01  1,500 units, forecast 1,200: threshold 1,200 x 1.10 = 1,320, surge 180; KPI 0.75
    2024-02  600 units, no forecast: 200 short of the minimum; KPI 0.92
    2024-03  1,000 units; KPI 0.85; CPI review: 2024-01 = 112 against 2023-10 = 100
    2024-04  1,000 units; KPI 0.85; provider invoice billed voice at 2.05
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pipelines import engine, workflow
from pipelines.cli import main
from pipelines.errors import SettleError
from pipelines.explain.readers import INVOICE_SUMMARY_SQL
from pipelines.periods import fmt, parse_period
from tests.conftest import Workspace

REPO = Path(__file__).resolve().parent.parent

T1 = """\
contract_id: T1
client: Test Client
currency: GBP
start: 2024-01
end: 2024-12
rounding: {mode: half_up, amount_scale: 2, rate_scale: 4}
service_lines:
  - id: voice
    description: Inbound voice
    unit: contact
    pricing:
      - effective_from: 2024-01
        model: graduated
        bands:
          - {up_to: 1000, rate: 2.00}
          - {rate: 1.50}
        minimum_units: 800
        surge: {over_forecast_pct: 0.10, rate: 3.00}
fixed_fees:
  - {id: mgmt, description: Account management, amount: 1000.00, indexed: true}
indexation:
  index_id: CPI
  base_period: 2023-10
  first_review: 2024-03
  review_every_months: 12
  lag_months: 2
  cap: 0.05
  floor: 0.0
  indexed_share: 0.50
  applies_to: [mgmt]
service_credits:
  regime: at_risk_pool
  at_risk_pct: 0.10
  pool_pct: 1.0
  monthly_cap_pct: 0.20
  kpis:
    - id: sl
      description: Service level
      direction: higher_is_better
      target: [{effective_from: 2024-01, value: 0.80}]
      allocation_pct: 1.0
      credit: {model: binary}
      earn_back_months: 1
      bonus: {at_or_better: 0.90, pct_of_charges: 0.01}
gain_share:
  scope: [voice]
  measure: unit_cost
  baselines:
    - {effective_from: 2024-01, value: 2.10, reason: contract baseline}
    - effective_from: 2024-03
      value: 2.20
      reason: "rebased: new call types"
      agreed_on: 2024-05-15
  settle_every: month
  tiers:
    - {provider_share: 0.50}
"""

T2 = """\
contract_id: T2
currency: EUR
start: 2024-01
end: 2024-12
service_lines:
  - id: claims
    pricing:
      - {effective_from: 2024-01, model: per_unit, bands: [{rate: 10.00}]}
"""


def build_portfolio(root: Path) -> Workspace:
    """Settle and close 2024-01..03 as known on 2024-04-01, then settle 2024-04 (see module doc)."""
    ws = Workspace(root)
    ws.contract(T1)
    ws.contract(T2)
    ws.volumes(
        [
            ("T1", "voice", "2024-01", "1500", "1200"),
            ("T1", "voice", "2024-02", "600"),
            ("T1", "voice", "2024-03", "1000"),
            ("T1", "voice", "2024-04", "1000"),
            ("T2", "claims", "2024-01", "100"),
            ("T2", "claims", "2024-02", "100"),
            ("T2", "claims", "2024-03", "100"),
            ("T2", "claims", "2024-04", "100"),
        ]
    )
    ws.kpis(
        [
            ("T1", "sl", "2024-01", "0.75"),
            ("T1", "sl", "2024-02", "0.92"),
            ("T1", "sl", "2024-03", "0.85"),
            ("T1", "sl", "2024-04", "0.85"),
        ]
    )
    ws.index_values([("CPI", "2023-10", "100.0"), ("CPI", "2024-01", "112.0")])
    ws.vendor_invoices(
        [
            ("T1", "2024-04", "INV-T1-04", "usage:voice", "voice", "1000", "2.05", "2050.00"),
            ("T1", "2024-04", "INV-T1-04", "fixed:mgmt", "mgmt", None, None, "1025.00"),
            ("T1", "2024-04", "INV-T1-04", "gain_share", "gain-share", None, None, "100.00"),
            ("T2", "2024-04", "INV-T2-04", "usage:claims", "claims", None, None, "1000.00"),
            ("T2", "2024-04", "INV-T2-04", "fixed:admin", "admin fee", None, None, "25.00"),
        ]
    )
    ws.settle("2024-01", "2024-03", as_known_at="2024-04-01")
    for month in ("2024-01", "2024-02", "2024-03"):
        ws.close(month)
    ws.settle("2024-04")
    return ws


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_portfolio(tmp_path_factory.mktemp("portfolio"))


def explain(db: Path, period: str, line: str | None = None, contract: str = "T1") -> str:
    args = ["explain", "--contract", contract, "--period", period, "--db", str(db)]
    if line:
        args += ["--line", line]
    result = CliRunner().invoke(main, args)
    if result.exception:
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_usage_with_bands(portfolio):
    text = explain(portfolio.db, "2024-01", "usage:voice")
    # 1,500 units, 180 above the surge threshold: 1,320 in the bands
    assert "Units: 1,320 in the bands, of the month's 1,500 units of voice" in text
    assert "180 above the surge threshold are billed on surge:voice" in text
    assert "Pricing: graduated" in text
    assert "effective from 2024-01" in text
    # band 1: 0..1,000, 1,000 units x 2.00 = 2,000.00; band 2: above 1,000, 320 x 1.50 = 480.00
    rows = [line.split() for line in text.splitlines() if line.strip()[:2] in ("1 ", "2 ")]
    assert rows == [
        ["1", "0", "1,000", "1,000", "2.00", "2.00", "0.00", "2,000.00"],
        ["2", "1,000", "open", "320", "1.50", "1.50", "0.00", "480.00"],
    ]
    assert "sum of the bands: 2,000.00 + 480.00 = 2,480.00" in text
    # voice is not in applies_to: factor 1 though the March review set 1.025 for mgmt (see below)
    assert "Index factor 1: no indexation review applies to this month" in text
    assert "Amount: 2,480.00 GBP (usage)" in text
    assert "Rounding: 2,480.00 is exact: no rounding needed" in text
    # no provider invoice for January
    assert "Provider's invoice: not billed (difference -2,480.00)" in text


def test_surge(portfolio):
    text = explain(portfolio.db, "2024-01", "surge:voice")
    # threshold forecast 1,200 x 1.10 = 1,320; 1,500 - 1,320 = 180 surge units x 3.00 = 540.00
    # the forecast, the over-forecast share and the threshold are stored on the line
    assert "forecast 1,200 x (1 + 10%) = threshold 1,320, so 180 are surge units" in text
    assert "1,320 stay in the bands" in text
    assert "Amount: 180 x 3.00 = 540.00" in text
    assert "Amount: 540.00 GBP (surge)" in text


def test_minimum(portfolio):
    text = explain(portfolio.db, "2024-02", "minimum:voice")
    # 600 units against a minimum of 800: 200 short x the first band's 2.00 = 400.00
    assert "the month's 600 units of voice are below the minimum of 800 units" in text
    assert (
        "Shortfall: 200 units x the first band's rate 2.00, rounded once (2 places, half_up) "
        "= 400.00"
    ) in text
    # no minimum charge on voice: no top-up sentence at all
    assert "top-up" not in text
    assert "Amount: 400.00 GBP (minimum)" in text
    usage = explain(portfolio.db, "2024-02", "usage:voice")
    # 600 units all in band 1 at 2.00 = 1,200.00
    assert "Amount: 1,200.00 GBP (usage)" in usage
    assert "Below the line's minimum: see minimum:voice" in usage


def test_fixed_fee_indexed(portfolio):
    before = explain(portfolio.db, "2024-02", "fixed:mgmt")
    assert "Index factor 1: no indexation review applies to this month" in before
    assert "Amount: 1,000.00 GBP (fixed_fee)" in before
    text = explain(portfolio.db, "2024-03", "fixed:mgmt")
    # review 2024-03 reads 2024-03 - 2 months = 2024-01: 112 / 100 - 1 = +12%, clamped to the
    # 5% cap; factor = 1 x (1 + 0.5 x 0.05) = 1.025; fee 1,000.00 x 1.025 = 1,025.00
    assert "Index factor 1.025 (chained; review 2024-03, in force from that month)" in text
    assert (
        "CPI: 2024-01 = 112 against 2023-10 = 100: raw change +12%, applied +5% "
        "(clamped to the cap), weight 0.5"
    ) in text
    assert "factor = previous 1 x (1 + 0.5 x 0.05) = 1.025 -> 1.025" in text
    assert "Fixed fee: 1,000.00 a month" in text
    assert "Indexed: 1,000.00 x 1.025 = 1,025.00" in text
    assert "Amount: 1,025.00 GBP (fixed_fee)" in text


def test_credit(portfolio):
    text = explain(portfolio.db, "2024-01", "credit:sl")
    # KPI 0.75 < target 0.80: failed, the first failure
    assert "KPI sl (higher is better): actual 0.75 vs target 0.8" in text
    assert ": failed; consecutive failures 1" in text
    # charges 2,480.00 + 540.00 + 1,000.00 = 4,020.00; at risk 10% = 402.00; x 1.0 x 1 x 1
    assert "At risk: 10% of the month's charges 4,020.00 = 402.00" in text
    assert "Allocation 100%; severity 1 (binary); multiplier 1 (first failure of a run)" in text
    assert "Uncapped credit: 402.00 x 1 x 1 x 1 = 402.00" in text
    # cap 20% x 4,020.00 = 804.00
    assert "Monthly cap: 20% of charges = 804.00" in text
    assert "are within it" in text
    assert "Credit: -402.00" in text
    # met in February, the one month that earns it back
    assert "Earn-back: returned in full if the KPI meets target in each of the next 1" in text
    assert "earned back in 2024-02" in text


def test_earn_back_and_bonus(portfolio):
    text = explain(portfolio.db, "2024-02", "earn_back:sl")
    assert "Credit of 2024-01: 402.00" in text
    assert "since then: 2024-02 met" in text
    assert "Earn-back: the credit of 2024-01, 402.00, is returned in full" in text
    assert "Amount: 402.00 GBP (earn_back)" in text
    bonus = explain(portfolio.db, "2024-02", "bonus:sl")
    # 0.92 >= 0.90 and nothing failed: 1% of charges 1,200.00 + 400.00 + 1,000.00 = 2,600.00
    assert "actual 0.92 vs target 0.8" in bonus
    assert "No KPI failed this month" in bonus
    assert "Charges before credits: 2,600.00" in bonus
    assert "Amount: 26.00 GBP (bonus)" in bonus


def test_gain_share(portfolio):
    text = explain(portfolio.db, "2024-01", "gain_share")
    # volume 1,500; baseline 2.10 x 1,500 = 3,150.00; actual usage 2,480.00 + surge 540.00 =
    # 3,020.00; savings 130.00; 50% = 65.00
    assert "Window 2024-01..2024-01 (1 month(s), settled every month)" in text
    assert "Volume 1,500; baseline cost 3,150.00 (each month's baseline per unit x" in text
    assert "actual cost 3,020.00 (the scope's charges before credits)" in text
    assert "Savings = baseline cost - actual cost = 130.00" in text
    assert "Baseline: contract baseline" in text
    assert "Shared by tiers: 130.00 x 0.50 = 65.00" in text
    assert "Outcome: gain" in text
    assert "Amount: 65.00 GBP (gain_share)" in text


def test_adjustment(portfolio):
    text = explain(portfolio.db, "2024-04", "adjustment:gain_share:2024-03")
    # March closed on 2.10: 2,100.00 - 2,000.00 = 100.00, provider 50.00. Rebased to 2.20:
    # 2,200.00 - 2,000.00 = 200.00, provider 100.00; delta 100.00 - 50.00 - 0.00 = 50.00
    assert "Restates gain_share of 2024-03, a closed month (closed at run 1)" in text
    assert "Closed amount 50.00; previously adjusted 0.00; restated 100.00" in text
    assert "= 100.00 - 50.00 - 0.00 = 50.00" in text
    assert "Reason: rebased: new call types" in text
    assert "As closed: savings 100.00 on contract baseline, provider amount 50.00" in text
    assert "Amount: 50.00 GBP (adjustment)" in text
    # billed on April's invoice but not by the provider: 0.00 - 50.00
    assert "Provider's invoice: not billed (difference -50.00)" in text


def test_reconciliation_variances(portfolio):
    text = explain(portfolio.db, "2024-04", "usage:voice")
    # billed 1,000 x 2.05 = 2,050.00 against 1,000 x 2.00 = 2,000.00: +50.00, all rate variance
    assert (
        "billed 2,050.00, difference 50.00: over_billed (rate variance 50.00, volume variance "
        "0.00, other 0.00)"
    ) in text


def test_whole_invoice_and_header(portfolio):
    text = explain(portfolio.db, "2024-04")
    assert text.startswith("T1 2024-04 (GBP)\n")
    # run 2 settled April; 2,000.00 + 1,025.00 + 100.00 gain-share + 50.00 adjustment = 3,175.00
    assert "Figures of run 2" in text
    assert "the month is open" in text
    assert "Invoice: 4 line(s), amount due 3,175.00 GBP" in text
    assert re.findall(r"^  (\S+): ", text, re.M) == [
        "usage:voice",
        "fixed:mgmt",
        "gain_share",
        "adjustment:gain_share:2024-03",
    ]
    closed = explain(portfolio.db, "2024-03")
    assert "as known at 2024-04-01" in closed
    assert "the month is closed" in closed


def test_reads_only_the_database(portfolio, tmp_path):
    # the same text from a copy of the file alone, far from the contracts and inputs
    copy = tmp_path / "audit.duckdb"
    shutil.copy(portfolio.db, copy)
    assert explain(copy, "2024-01") == explain(portfolio.db, "2024-01")
    assert explain(copy, "2024-01") == explain(copy, "2024-01")


def test_errors(portfolio, tmp_path):
    with pytest.raises(
        SettleError, match=r"no settled figures for T1 in 2024-07.*2024-01\.\.2024-04"
    ):
        explain(portfolio.db, "2024-07")
    with pytest.raises(SettleError, match=r"no settled figures for contract NOPE.*T1, T2"):
        explain(portfolio.db, "2024-01", contract="NOPE")
    with pytest.raises(SettleError, match=r"no line 'bonus:sl' on the 2024-01 invoice of T1"):
        explain(portfolio.db, "2024-01", "bonus:sl")
    with pytest.raises(SettleError, match="no such database"):
        explain(tmp_path / "missing.duckdb", "2024-01")


def test_a_window_with_no_line_is_still_explained(portfolio):
    # February: 2.10 x 600 = 1,260.00 against 1,200.00 + 400.00 = 1,600.00: an overrun of 340.00
    # the contract does not share (no pain_share), so no gain_share line
    text = explain(portfolio.db, "2024-02")
    assert "Settled this month with no invoice line (the amount is zero):" in text
    assert "Savings = baseline cost - actual cost = -340.00 (an overrun)" in text
    assert "Pain share: no: an overrun is not shared" in text
    assert "Outcome: pain_not_shared" in text
    assert "Outcome: pain_not_shared" in explain(portfolio.db, "2024-02", "gain_share")


def test_a_database_held_for_writing_is_a_clear_error(portfolio, tmp_path):
    copy = tmp_path / "busy.duckdb"
    shutil.copy(portfolio.db, copy)
    with duckdb.connect(str(copy)), pytest.raises(SettleError, match="in use by a running"):
        explain(copy, "2024-01")


# --------------------------------------------------------------------------- explained from stored

# A month, with or without a day and a time: a date is not a figure of the settlement.
DATE = re.compile(r"\b\d{4}-\d{2}(?:-\d{2})?(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\b")
# A number as explain prints it: thousands separators, a sign, a percentage.
NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?%?(?!\w)")
STATED_SUM = re.compile(r"((?:-?[\d,.]+ \+ )+-?[\d,.]+) = (-?[\d,.]+)")
# the month a stored row belongs to, in the order a table is keyed by it
MONTH_COLUMNS = ("billed_in_period", "billed_period", "period")


def stored_values(con: duckdb.DuckDBPyConnection, contract: str, period) -> tuple[set, set]:
    """The numbers and the texts of the stored rows a month's invoice stands on.

    Every stored table, for the contract, in the run that stands for each of its months up to this
    one (keyed by the table's month column: a table row counts only in the run that stands for its
    month); the indexation reviews of the run standing for this month; that run's own record; and
    the month's invoice summary (the stated sums of its lines: count and totals).
    """
    stands = con.execute(
        "SELECT run_id, period FROM current_run_periods WHERE contract_id = ? AND period <= ?",
        [contract, period],
    ).fetchall()
    run = dict((p, r) for r, p in stands)[period]
    con.execute("CREATE OR REPLACE TEMP TABLE stands (run_id BIGINT, period DATE)")
    con.executemany("INSERT INTO stands VALUES (?, ?)", stands)
    tables = [
        r[0]
        for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary"
        ).fetchall()
    ]
    values: list = []
    for table in tables:
        columns = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
        month = next((c for c in MONTH_COLUMNS if c in columns), None)
        if table == "settlement_runs":
            query, params = f"SELECT * FROM {table} WHERE run_id = ?", [run]
        elif "contract_id" not in columns:
            continue
        elif table == "index_factors":
            query = f"SELECT * FROM {table} WHERE contract_id = ? AND run_id = ? AND period <= ?"
            params = [contract, run, period]
        elif "run_id" in columns and month:
            query = (
                f"SELECT t.* FROM {table} t JOIN stands s "
                f"ON s.run_id = t.run_id AND s.period = t.{month} WHERE t.contract_id = ?"
            )
            params = [contract]
        else:
            query, params = f"SELECT * FROM {table} WHERE contract_id = ?", [contract]
        for row in con.execute(query, params).fetchall():
            values.extend(row)
    values.extend(
        con.execute(
            f"SELECT * FROM ({INVOICE_SUMMARY_SQL}) WHERE contract_id = ? AND period = ?",
            [contract, period],
        ).fetchone()
    )
    numbers: set[Decimal] = set()
    texts: set[str] = set()

    def add(v) -> None:
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, int | Decimal):
            numbers.add(Decimal(v).normalize())
        elif isinstance(v, str) and len(v) >= 3 and re.search(r"\d", v):
            texts.add(v)
        elif isinstance(v, list | tuple):
            for x in v:
                add(x)
        elif isinstance(v, dict):
            for x in v.values():
                add(x)

    for v in values:
        add(v)
    return numbers, texts


def as_decimal(token: str) -> Decimal:
    t = token.replace(",", "")
    return (Decimal(t[:-1]) / 100 if t.endswith("%") else Decimal(t)).normalize()


def unstored_numbers(text: str, numbers: set, texts: set) -> list[tuple[str, str]]:
    """Each number printed that is neither a stored value nor the sum the text states of them.

    Stored texts (descriptions, reasons, the tiers applied, the code version) are printed verbatim
    and taken out first; so are dates."""
    for stored in sorted(texts, key=len, reverse=True):
        text = text.replace(stored, " <stored text> ")
    text = DATE.sub(" <date> ", text)
    missing = []
    for line in text.splitlines():
        sums = {
            as_decimal(m.group(2))
            for m in STATED_SUM.finditer(line)
            if sum(as_decimal(x) for x in m.group(1).split(" + ")) == as_decimal(m.group(2))
        }
        for token in NUMBER.findall(line):
            if as_decimal(token) not in numbers | sums:
                missing.append((token, line.strip()))
    return missing


def settle_samples(db: Path) -> None:
    """The demo flow (Makefile `demo`) on the bundled samples: 2024-01..2025-06 as known at
    2025-07-10 and closed, then 2025-07..2025-12 (a rebasing restates the closed Q2)."""
    contracts, data = REPO / "contracts_config", REPO / "data_samples"
    engine.settle(
        contracts,
        data,
        db,
        engine.RunRequest(
            parse_period("2024-01"), parse_period("2025-06"), as_known_at=dt.date(2025, 7, 10)
        ),
    )
    workflow.approve(db, parse_period("2024-01"), parse_period("2025-06"), by="test")
    engine.close(db, parse_period("2024-01"), to=parse_period("2025-06"))
    engine.settle(
        contracts, data, db, engine.RunRequest(parse_period("2025-07"), parse_period("2025-12"))
    )


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("samples") / "settlement.duckdb"
    settle_samples(db)
    return db


def test_every_number_explain_prints_is_stored(samples):
    """Every line of every invoice of the sample portfolio (72 contract-months, two runs, a closed
    half-year and a restated quarter): each number `settle explain` prints is a stored value of
    the rows the month stands on, or the sum the text states of them."""
    with duckdb.connect(str(samples), read_only=True) as con:
        months = con.execute(
            "SELECT DISTINCT contract_id, period FROM current_invoice_lines ORDER BY ALL"
        ).fetchall()
        assert len(months) == 3 * 24
        # the samples bill every line type, the terms beyond the month included (SPEC 10)
        types = {
            r[0] for r in con.sql("SELECT DISTINCT line_type FROM current_invoice_lines").fetchall()
        }
        assert {"true_up", "credit_cap_refund", "pass_through", "one_off", "fx_share"} <= types
        missing = []
        for contract, period in months:
            text = explain(samples, fmt(period), contract=contract)
            assert "no stored" not in text, text
            numbers, texts = stored_values(con, contract, period)
            missing += [(contract, fmt(period), *m) for m in unstored_numbers(text, numbers, texts)]
    assert missing == []


def test_the_check_finds_a_number_that_is_not_stored(portfolio):
    # the check itself: a made-up figure in an explanation is reported
    with duckdb.connect(str(portfolio.db), read_only=True) as con:
        numbers, texts = stored_values(con, "T1", dt.date(2024, 2, 1))
    text = explain(portfolio.db, "2024-02", "minimum:voice")
    assert unstored_numbers(text, numbers, texts) == []
    assert unstored_numbers(text + "    top-up 123.45\n", numbers, texts) == [
        ("123.45", "top-up 123.45")
    ]


ZERO_PLACES = """\
contract_id: Z0
currency: JPY
start: 2024-01
end: 2024-12
rounding: {mode: half_up, amount_scale: 0, rate_scale: 4}
service_lines:
  - id: loose
    pricing:
      - effective_from: 2024-01
        model: per_unit
        bands: [{rate: 2.45}]
        minimum_units: 20
        minimum_charge: 40
  - id: tight
    pricing:
      - effective_from: 2024-01
        model: per_unit
        bands: [{rate: 2.45}]
        minimum_units: 20
        minimum_charge: 60
"""


def test_a_zero_place_minimum_is_explained_without_a_top_up_it_does_not_bill(ws):
    """No credits, 0 places, half_up; 10 units of each line at 2.45.

    usage: 10 x 2.45 = 24.5 -> 25 (a tie, half_up). Shortfall: 20 - 10 = 10 units x 2.45 = 24.5
    -> 25. loose: 25 + 25 = 50 reaches the minimum charge 40: the minimum line is the shortfall,
    25, with no top-up (reading the shortfall at 2 places, 24.50, would show a top-up of 0.50 that
    is not on the invoice). tight: 50 is below 60: top-up 60 - 25 - 25 = 10, line 25 + 10 = 35.
    """
    ws.contract(ZERO_PLACES)
    ws.volumes([("Z0", "loose", "2024-01", "10"), ("Z0", "tight", "2024-01", "10")])
    ws.settle("2024-01")
    assert ws.lines("2024-01") == {
        "usage:loose": Decimal("25"),
        "minimum:loose": Decimal("25"),
        "usage:tight": Decimal("25"),
        "minimum:tight": Decimal("35"),
    }
    loose = explain(ws.db, "2024-01", "minimum:loose", contract="Z0")
    assert "Amount: 25.00 JPY (minimum)" in loose
    assert "rounded once (0 places, half_up) = 25.00" in loose
    assert "Minimum charge 40.00: usage 25.00 + shortfall 25.00 reaches it; no top-up" in loose
    assert "0.5" not in loose
    assert "the top-up" not in loose
    tight = explain(ws.db, "2024-01", "minimum:tight", contract="Z0")
    assert "usage 25.00 + shortfall 25.00 is below it; the top-up 10.00 is on this line" in tight
    assert "Line: shortfall 25.00 + top-up 10.00 = 35.00" in tight
    usage = explain(ws.db, "2024-01", "usage:loose", contract="Z0")
    assert "Rounding: 24.50 -> 25.00 (0 places, half_up, the contract's rounding)" in usage
    with duckdb.connect(str(ws.db), read_only=True) as con:
        for text in (loose, tight, usage):
            assert unstored_numbers(text, *stored_values(con, "Z0", dt.date(2024, 1, 1))) == []


BASE_RELATIVE = """\
contract_id: B1
currency: GBP
start: 2024-01
end: 2025-12
rounding: {mode: half_up, amount_scale: 2, rate_scale: 4}
service_lines:
  - id: docs
    pricing:
      - {effective_from: 2024-01, model: package, package_size: 1000, package_price: 1450.00}
fixed_fees:
  - {id: mgmt, description: Account management, amount: 1000.00, indexed: true}
indexation:
  index_id: CPI
  base_period: 2023-12
  first_review: 2024-07
  lag_months: 2
  cap: 0.03
  floor: 0.0
  method: base_relative
  applies_to: [docs, mgmt]
"""


def test_a_held_factor_and_a_package_line_are_read_not_inferred(ws):
    """base_relative, weight 1: 2024-07 reads 2024-05 = 102 against the base 2023-12 = 100:
    factor 102/100 = 1.02, inside [1 x 1.00, 1 x 1.03]. 2025-07 reads 2025-05 = 110: 1.10, held
    within [1.02, 1.02 x 1.03 = 1.0506] at the cap: 1.0506.

    docs 2025-07: 2,500 units, ceil(2,500 / 1,000) = 3 packages x round(1,450.00 x 1.0506 =
    1,523.37) = 4,570.11; at base prices 3 x 1,450.00 = 4,350.00: indexation adds 220.11.
    """
    ws.contract(BASE_RELATIVE)
    ws.volumes([("B1", "docs", "2025-07", "2500")])
    ws.index_values(
        [("CPI", "2023-12", "100"), ("CPI", "2024-05", "102"), ("CPI", "2025-05", "110")]
    )
    ws.settle("2024-07", "2025-07")
    held = {
        r["period"]: (r["factor"], r["factor_held_at"])
        for r in ws.rows("SELECT * FROM current_index_factors")
    }
    assert held == {
        dt.date(2024, 7, 1): (Decimal("1.02"), None),
        dt.date(2025, 7, 1): (Decimal("1.0506"), "cap"),
    }
    text = explain(ws.db, "2025-07", "usage:docs", contract="B1")
    assert "held at the cap from the previous factor 1.02: 1.0506" in text
    assert (
        "Packages: 2,500 units / package size 1,000, rounded up -> 3 package(s) x package price "
        "1,523.37 (base 1,450.00, indexed) = 4,570.11"
    ) in text
    assert "Indexation effect: 4,570.11 against 4,350.00 at base-period prices = 220.11" in text
    with duckdb.connect(str(ws.db), read_only=True) as con:
        assert unstored_numbers(text, *stored_values(con, "B1", dt.date(2025, 7, 1))) == []


def test_an_earn_back_of_a_closed_month_names_the_credit_it_returns(ws):
    """January (T1's module figures: a 402.00 credit) is settled and closed before February is:
    January's stored credit row, the closing run's, still says the earn-back is pending. February's
    earn-back line names January itself (earned_back_of), so explain reads that credit row instead
    of re-applying the earn-back rule to the KPI history."""
    ws.contract(T1)
    ws.volumes([("T1", "voice", "2024-01", "1500", "1200"), ("T1", "voice", "2024-02", "600")])
    ws.kpis([("T1", "sl", "2024-01", "0.75"), ("T1", "sl", "2024-02", "0.92")])
    ws.index_values([("CPI", "2023-10", "100.0"), ("CPI", "2024-01", "112.0")])
    ws.settle("2024-01")
    ws.close("2024-01")
    ws.settle("2024-02")
    january = ws.rows("SELECT * FROM current_service_credits WHERE period = DATE '2024-01-01'")
    assert [(r["amount"], r["earn_back_status"]) for r in january] == [(Decimal("402"), "pending")]
    line = ws.rows("SELECT * FROM current_invoice_lines WHERE line_key = 'earn_back:sl'")[0]
    assert (line["period"], line["amount"], line["earned_back_of"]) == (
        dt.date(2024, 2, 1),
        Decimal("402.00"),
        [dt.date(2024, 1, 1)],
    )
    text = explain(ws.db, "2024-02", "earn_back:sl")
    assert "Credit of 2024-01: 402.00 (earn-back after 1 assessed months)" in text
    assert "Earn-back: the credit of 2024-01, 402.00, is returned in full" in text


def test_numbers_print_every_stored_digit_past_28():
    # DECIMAL(38, 22) holds 29 significant digits here; Decimal.normalize() and `* 100` in the
    # default context keep 28 and printed 1,234,567.123456789012345678901 (the last 2 lost)
    from pipelines.explain.text import money, pct
    from pipelines.orchestration.display import money as dagster_money

    stored = Decimal("1234567.1234567890123456789012000000")
    assert money(stored) == "1,234,567.1234567890123456789012"
    assert dagster_money(stored) == "1,234,567.1234567890123456789012"
    # 0.1234567890123456789012345678901 x 100, the point moved two places
    assert pct(Decimal("0.1234567890123456789012345678901")) == "12.34567890123456789012345678901%"
    assert money(Decimal("-0.0000")) == "0.00" and dagster_money(Decimal("12.5000")) == "12.50"


# --------------------------------------------------------------------------- terms beyond the month

TERMS = """\
contract_id: X1
currency: GBP
start: 2024-02
end: 2024-04
rounding: {mode: half_up, amount_scale: 2, rate_scale: 4}
service_lines:
  - id: voice
    pricing:
      - {effective_from: 2024-02, model: per_unit, bands: [{rate: 10.00}]}
    commitments:
      - {effective_from: 2024-02, over: quarter, minimum_units: 1000}
pass_through:
  - {id: telco, description: Telephony at cost, margin_pct: 0.05}
one_off_charges:
  - {id: transition, description: Transition, amount: 1000.00, first_period: 2024-02,
     instalments: 3}
service_credits:
  at_risk_pct: 0.10
  monthly_cap_pct: 0.20
  annual_cap_pct: 0.10
  annual_cap_amount: 600.00
  kpis:
    - {id: sl, target: 0.80, allocation_pct: 1.0}
fx_sharing: {delivery_currency: INR, base_rate: 0.0100, band_pct: 0.05, client_share: 0.50,
             lag_months: 1}
"""


@pytest.fixture(scope="module")
def terms(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """X1, 2024-02..2024-04, 300 units of voice at 10.00 a month (3,000.00), the KPI failing
    every month (0.70 against 0.80)."""
    ws = Workspace(tmp_path_factory.mktemp("terms"))
    ws.contract(TERMS)
    ws.volumes([("X1", "voice", p, "300") for p in ("2024-02", "2024-03", "2024-04")])
    ws.kpis([("X1", "sl", p, "0.70") for p in ("2024-02", "2024-03", "2024-04")])
    ws.pass_through(
        [
            ("X1", "2024-02", "telco", "February bill", "600.00", "T-1"),
            ("X1", "2024-02", "telco", "February top-up", "400.00", "T-2"),
        ]
    )
    ws.fx_rates(
        [("INR", "2024-01", "0.0104"), ("INR", "2024-02", "0.0110"), ("INR", "2024-03", "0.0088")]
    )
    ws.settle("2024-02", "2024-04")
    return ws


def test_terms_beyond_the_month_lines(terms):
    # Q1 has Feb and Mar in the term: 1,000 x 2/3 = 666.666...; 600 units: 66.666... short x
    # 10.00 = 666.666... -> 666.67. Charges: Feb 3,000.00; Mar 3,666.67. Q2 has April alone:
    # 1,000 x 1/3 = 333.333...; 300 units: 33.333... x 10.00 -> 333.33; Apr 3,333.33.
    # Credits, 10% of charges: -300.00, -366.67, -333.33; the year (Feb..Apr in the term):
    # -1,000.00 against the lower of 600.00 and 10% x 10,000.00 = 1,000.00: 400.00 returned.
    # One-off: 1,000.00 / 3 -> 333.34, 333.33, 333.33. Telco: 1,000.00 x 1.05 = 1,050.00.
    # FX (lag 1): Feb reads 0.0104, +4%, inside the 5% band; Mar reads 0.0110, +10%, e = +5%:
    # 3,666.67 x 0.05 x 0.50 = 91.66675 -> 91.67; Apr reads 0.0088, -12%, e = -7%:
    # 3,333.33 x -0.07 x 0.50 = -116.66655 -> -116.67.
    assert terms.lines("2024-02") == {
        "usage:voice": Decimal("3000.00"),
        "credit:sl": Decimal("-300.00"),
        "one_off:transition": Decimal("333.34"),
        "pass_through:telco": Decimal("1050.00"),
    }
    assert terms.lines("2024-03") == {
        "usage:voice": Decimal("3000.00"),
        "true_up:voice": Decimal("666.67"),
        "credit:sl": Decimal("-366.67"),
        "one_off:transition": Decimal("333.33"),
        "fx_share": Decimal("91.67"),
    }
    assert terms.lines("2024-04") == {
        "usage:voice": Decimal("3000.00"),
        "true_up:voice": Decimal("333.33"),
        "credit:sl": Decimal("-333.33"),
        "credit_cap_refund": Decimal("400.00"),
        "one_off:transition": Decimal("333.33"),
        "fx_share": Decimal("-116.67"),
    }


def test_true_up_explained(terms):
    text = explain(terms.db, "2024-03", "true_up:voice", contract="X1")
    assert "Commitment over a calendar quarter (in force from 2024-02)" in text
    assert "window 2024-01..2024-03, settled in its last month in the term, 2024-03" in text
    # two of the quarter's three months are in the term
    assert "2 of the window's 3 months: the minimum is prorated by 2/3" in text
    assert "Committed 1,000 units x 2/3 = 666.6666666667" in text
    assert "the window's actual units of voice: 600" in text
    assert (
        "Shortfall 66.6666666667 units x the first band's rate in force 10.00, rounded once "
        "(2 places, half_up) = 666.67"
    ) in text
    assert "Amount: 666.67 GBP (true_up)" in text
    april = explain(terms.db, "2024-04", "true_up:voice", contract="X1")
    assert "1 of the window's 3 months" in april
    assert "Shortfall 33.3333333333 units" in april


def test_credit_cap_refund_explained(terms):
    text = explain(terms.db, "2024-04", "credit_cap_refund", contract="X1")
    assert "Contract year 2024-02..2025-01, 2024-02..2024-04 in the term" in text
    # 3,000.00 + 3,666.67 + 3,333.33 = 10,000.00; -300.00 - 366.67 - 333.33 = -1,000.00
    assert "Charges before credits over the year: 10,000.00" in text
    assert "credits net of earn-back: -1,000.00" in text
    assert (
        "Annual cap: the lower of 600.00 and 10% of the year's charges 10,000.00 = 600.00" in text
    )
    assert "exceed the cap in absolute value" in text
    assert "= 400.00" in text
    assert "Amount: 400.00 GBP (credit_cap_refund)" in text


def test_pass_through_explained(terms):
    text = explain(terms.db, "2024-02", "pass_through:telco", contract="X1")
    # 600.00 + 400.00 = 1,000.00 over two rows; x 1.05 = 1,050.00
    assert "Cost: 1,000.00, the month's 2 pass_through/ row(s) of telco" in text
    assert "Margin 5%: cost x 1.05, rounded once (2 places, half_up) = 1,050.00" in text
    assert "not in the at-risk amount" in text


def test_one_off_explained(terms):
    text = explain(terms.db, "2024-02", "one_off:transition", contract="X1")
    # 100,000 cents / 3 = 33,333 each, 1 left over, to the first instalment
    assert "One-off charge 1,000.00 in 3 monthly instalments: each 333.33" in text
    assert "the 1 unit(s) of the last place left over go one each to the earliest" in text
    assert "Instalment 1 of 3: one extra unit of the last place -> 333.34" in text
    march = explain(terms.db, "2024-03", "one_off:transition", contract="X1")
    assert "Instalment 2 of 3: no extra unit -> 333.33" in march


def test_fx_share_explained(terms):
    text = explain(terms.db, "2024-03", "fx_share", contract="X1")
    assert "Rate: INR 0.011 of 2024-02 (the month less the lag of 1 month(s))" in text
    assert "against the base rate 0.01" in text
    assert "Movement: +10%; band ±5%: shared movement (beyond the band) +5%" in text
    assert "lines): 3,666.67" in text
    assert "client share 50%" in text
    assert "= 91.67, to the provider" in text
    april = explain(terms.db, "2024-04", "fx_share", contract="X1")
    assert "Movement: -12%; band ±5%: shared movement (beyond the band) -7%" in april
    assert "= -116.67, to the client" in april


def test_terms_settled_with_no_line_are_explained(terms):
    # February reads 0.0104: +4%, inside the 5% band, so no fx_share line
    text = explain(terms.db, "2024-02", contract="X1")
    assert "Settled this month with no invoice line (the amount is zero):" in text
    assert "Movement: +4%; band ±5%: shared movement (beyond the band) 0%" in text
    assert "No fx_share line: inside the band: nothing is shared" in text
    assert "fx_share" not in terms.lines("2024-02")
    assert "No fx_share line" in explain(terms.db, "2024-02", "fx_share", contract="X1")


def test_a_commitment_met_is_explained_with_no_line(samples):
    # NORTHWIND's 2025 MI reporting bills 125,000.00 against the 120,000.00 committed: no true-up
    text = explain(samples, "2025-12", "true_up:mi_reporting", contract="NORTHWIND-BACKOFFICE-01")
    assert (
        "Committed charge 120,000.00; the window's usage charges of mi_reporting: 125,000.00"
        in text
    )
    assert "The usage charges reach the committed charge: no true-up" in text
    assert "Amount: 0.00 EUR (true_up)" in text


def test_every_number_of_the_terms_lines_is_stored(terms):
    with duckdb.connect(str(terms.db), read_only=True) as con:
        for period in ("2024-02", "2024-03", "2024-04"):
            text = explain(terms.db, period, contract="X1")
            assert "no stored" not in text, text
            numbers, texts = stored_values(con, "X1", parse_period(period))
            assert unstored_numbers(text, numbers, texts) == [], text
