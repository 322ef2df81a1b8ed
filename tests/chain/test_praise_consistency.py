"""Praise alerts are left out of alert_adoption_rate's measures as the chain leaves them out of its
adoption, so the experiment's KPI and ``insightroi chain`` agree on one real DuckDB store that has
praise alerts (in the praise stream, and one an older detector routed to a topic owner)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from insightroi.chain import chain_summary
from insightroi.chain._links import is_praise, praise_event
from insightroi.metrics import measure_totals, unit_metrics
from insightroi.program import PRAISE_OWNER, parse_program, starter_program_text
from insightroi.store import open_store

# Teams are the experiment's units here, as alert_adoption_rate's unit is a team.
PROGRAM = parse_program(starter_program_text().replace('design = "cluster"\nunit = "sku_family"',
                                                       'design = "cluster"\nunit = "team"'))
T0 = datetime(2025, 9, 8, 0, 0)
H = timedelta(hours=1)
WINDOW = (date(2025, 9, 1), date(2025, 9, 30))


def chain_rows() -> list[dict]:
    """Owners' alerts: logistics 4 (3 acted, 1 ignored), support 2 (1 acted, one with no payload);
    praise: 2 in the praise stream (one acknowledged and acted on there) and 1 routed to logistics
    with a compact payload, nobody acting on it."""
    ev: list[dict] = []

    def alert(aid, team, t, payload):
        ev.append({"id": aid, "event_type": "alert_delivered", "alert_id": aid, "event_time": t, "team": team,
                   "topic": "praise" if "praise" in aid else "shipping_delay", "sku_family": "F1",
                   "actor": "insightroi-detect", "payload": payload, "batch_id": "detect"})

    def follow(aid, etype, t, team):
        ev.append({"id": f"{aid}-{etype}", "event_type": etype, "alert_id": aid, "event_time": t, "team": team,
                   "topic": None, "sku_family": None, "actor": "dana", "payload": "{}", "batch_id": "api"})

    problem = json.dumps({"kind": "problem", "day": "2025-09-07", "observed": 20, "expected": 5.0})
    for i in range(4):
        alert(f"log-{i}", "logistics", T0 + i * H, problem)
    for i in range(3):
        follow(f"log-{i}", "action_taken", T0 + (20 + i) * H, "logistics")
    follow("log-0", "acknowledged", T0 + 3 * H, "logistics")
    follow("log-3", "ignored", T0 + 30 * H, "logistics")
    alert("sup-0", "support", T0 + 5 * H, problem)
    alert("sup-1", "support", T0 + 6 * H, None)  # an API client's alert: no payload, still a problem
    follow("sup-0", "action_taken", T0 + 40 * H, "support")
    # An episode update is neither a delivery nor an action.
    ev.append({"id": "log-0:updated", "event_type": "alert_updated", "alert_id": "log-0", "event_time": T0 + 48 * H,
               "team": "logistics", "topic": "shipping_delay", "sku_family": "F1", "actor": "insightroi-detect",
               "payload": json.dumps({"last_seen": "2025-09-09", "periods": 3, "peak_observed": 31}),
               "batch_id": "detect"})
    praise = json.dumps({"kind": "praise", "day": "2025-09-07", "observed": 40, "expected": 12.0})
    alert("praise-0", PRAISE_OWNER, T0 + 10 * H, praise)
    alert("praise-1", PRAISE_OWNER, T0 + 11 * H, praise)
    follow("praise-0", "acknowledged", T0 + 12 * H, PRAISE_OWNER)
    follow("praise-0", "action_taken", T0 + 13 * H, PRAISE_OWNER)
    alert("praise-2", "logistics", T0 + 12 * H, json.dumps({"kind": "praise", "observed": 9}, separators=(",", ":")))
    return ev


def assignment_rows() -> list[dict]:
    # Every team assigned, the praise stream included: its alerts must still not count.
    arms = {"logistics": "treatment", "support": "control", PRAISE_OWNER: "treatment"}
    return [{"id": f"as-{u}", "experiment": PROGRAM.experiment.name, "unit_type": "team", "unit_id": u, "arm": arm,
             "assigned_at": datetime(2025, 6, 1)} for u, arm in arms.items()]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    st = open_store(f"duckdb:///{tmp_path_factory.mktemp('praise') / 'p.duckdb'}")
    with st.transaction():
        st.append("chain_events", pd.DataFrame(chain_rows()))
        st.append("assignments", pd.DataFrame(assignment_rows()))
    yield st
    st.close()


def test_the_predicate_marks_the_three_praise_alerts_and_no_other_row(store):
    ev = store.table("chain_events")
    got = ev.filter(praise_event(ev)).select("id").execute()["id"]
    # praise-0's own follow-ups are in the praise stream; praise-2's kind is in its compact payload.
    assert sorted(got) == ["praise-0", "praise-0-acknowledged", "praise-0-action_taken", "praise-1", "praise-2"]
    assert is_praise("praise", "logistics") is True and is_praise(None, PRAISE_OWNER) is True
    assert is_praise("problem", "logistics") is False


def test_adoption_kpi_per_team_equals_the_chains_adoption(store):
    summary = chain_summary(store)
    assert summary["funnel"]["alerts"] == 6 and summary["funnel"]["acted"] == 4
    assert summary["praise"]["alerts"] == 3
    chain = {r["team"]: (r["acted"], r["alerts"], r["adoption_rate"]) for r in summary["by_team"]}
    assert chain == {"logistics": (3, 4, 0.75), "support": (1, 2, 0.5)}

    kpi = unit_metrics(store, PROGRAM, "alert_adoption_rate", window=WINDOW)
    per_team = {r.unit_id: (r.num, r.den) for r in kpi.itertuples()}
    # Before praise was left out: logistics 3 / 5 (praise-2 delivered to it), the praise stream 1 / 2.
    assert per_team == {"logistics": (3.0, 4.0), "support": (1.0, 2.0), PRAISE_OWNER: (0.0, 0.0)}
    for team, (acted, alerts, rate) in chain.items():
        assert per_team[team] == (acted, alerts)
        assert per_team[team][0] / per_team[team][1] == rate


def test_pooled_measures_equal_the_funnel(store):
    tot = measure_totals(store, PROGRAM, ["alerts", "alerts_acted", "alerts_acknowledged"], window=WINDOW, arm=None)
    funnel = chain_summary(store)["funnel"]
    assert (tot["alerts"], tot["alerts_acted"], tot["alerts_acknowledged"]) == (6.0, 4.0, 1.0)
    assert (tot["alerts"], tot["alerts_acted"], tot["alerts_acknowledged"]) == (
        funnel["alerts"], funnel["acted"], funnel["acknowledged"])
    assert tot["units"] == 3.0
