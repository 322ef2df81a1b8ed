"""The inbox and the themes page over real HTTP show each episode as last known (its
``alert_updated`` events override the figures the alert was written with) and mark praise alerts,
which stay out of the owner's backlog count as they stay out of ``insightroi chain``'s."""

from __future__ import annotations

import json
import re
from datetime import datetime

import httpx
import pandas as pd
import pytest
from _srv_helpers import TOKEN, seed_store

from insightroi.chain import chain_summary
from insightroi.program import PRAISE_OWNER
from insightroi.server import create_app
from insightroi.store import open_store

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DETECTED = "alert:shipping_delay:fam-008:2026-03-02"
PRAISE_BADGE = '<span class="badge pass" title="Good news: not counted as backlog">praise</span>'


def _row(rid, etype, aid, t, team, payload, topic="shipping_delay", fam="fam-008"):
    return {"id": rid, "event_type": etype, "alert_id": aid, "event_time": t, "team": team, "topic": topic,
            "sku_family": fam, "actor": "insightroi-detect", "payload": json.dumps(payload), "batch_id": "detect"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, live_server):
    url = f"duckdb:///{tmp_path_factory.mktemp('episodes')}/ep.duckdb"
    seed_store(url)
    rows = [
        # A detector alert written on day 3 of its episode, which then ran to 8 March.
        _row(DETECTED, "alert_delivered", DETECTED, datetime(2026, 3, 3), "logistics",
             {"kind": "problem", "day": "2026-03-02", "last_seen": "2026-03-03", "periods": 2, "peak_observed": 12}),
        _row(f"{DETECTED}:updated", "alert_updated", DETECTED, datetime(2026, 3, 9), "logistics",
             {"last_seen": "2026-03-08", "periods": 5, "peak_observed": 30, "previous": {"last_seen": "2026-03-03"}}),
        # The sample's alr-0001 (delivered with no episode figures) gets an update too.
        _row("alr-0001:updated", "alert_updated", "alr-0001", datetime(2026, 3, 11), "product_quality",
             {"last_seen": "2026-03-10", "periods": 9, "peak_observed": 57}, "product_defect", "fam-017"),
        # Praise: one in the praise stream, one an older detector routed to a topic owner.
        _row("praise-1", "alert_delivered", "praise-1", datetime(2026, 3, 6), PRAISE_OWNER,
             {"kind": "praise", "day": "2026-03-05", "last_seen": "2026-03-05", "periods": 1, "peak_observed": 40},
             "praise", "fam-008"),
        _row("praise-2", "alert_delivered", "praise-2", datetime(2026, 3, 7), "product_quality",
             {"kind": "praise", "day": "2026-03-06"}, "praise", "fam-017"),
    ]
    with open_store(url) as st:
        st.append("chain_events", pd.DataFrame(rows))
        chain = chain_summary(st)
    srv = live_server(create_app(url, token=TOKEN))
    with httpx.Client(base_url=srv.url, timeout=60, headers=AUTH) as c:
        yield c, chain


def _card(html: str, alert_id: str) -> str:
    m = re.search(r'<div class="alert-card" id="alert-' + re.escape(alert_id) + r'"(.*?)</h3>(.*?)</div>', html, re.S)
    assert m, alert_id
    return m.group(0)


def test_api_alerts_carry_the_latest_episode_and_the_praise_flag(world):
    c, _ = world
    r = c.get("/api/v1/alerts")
    items = {a["alert_id"]: a for a in r.json()["items"]}
    got = {k: items[DETECTED][k] for k in ("day", "last_seen", "periods", "peak_observed", "episode_updates", "kind",
                                           "praise", "in_backlog")}
    assert got == {"day": "2026-03-02", "last_seen": "2026-03-08", "periods": 5, "peak_observed": 30,
                   "episode_updates": 1, "kind": "problem", "praise": False, "in_backlog": True}
    assert (items["alr-0001"]["last_seen"], items["alr-0001"]["periods"], items["alr-0001"]["day"]) == (
        "2026-03-10", 9, "2026-03-02")
    assert items[DETECTED]["episode_updated_at"] == "2026-03-09T00:00:00"
    assert items["alr-0002"]["last_seen"] is None and items["alr-0002"]["episode_updates"] == 0
    assert items["alr-0002"]["episode_updated_at"] is None
    for aid in ("praise-1", "praise-2"):
        assert (items[aid]["kind"], items[aid]["praise"], items[aid]["in_backlog"]) == ("praise", True, False), aid
    # alr-0007 is raised in the bundle but never delivered: nobody's backlog yet.
    assert (items["alr-0007"]["status"], items["alr-0007"]["praise"], items["alr-0007"]["in_backlog"]) == (
        "new", False, False)


def test_inbox_shows_the_new_last_day_and_badges_praise(world):
    c, chain = world
    html = c.get("/inbox", params={"show": "all"}).text
    detected = _card(html, DETECTED)
    assert 'data-last-seen="2026-03-08"' in detected and 'data-praise="false"' in detected
    assert "last spike day 2026-03-08, 5 spike days, peak 30" in detected
    assert "2026-03-03" not in detected  # the figures it was written with are gone
    assert "last spike day 2026-03-10, 9 spike days, peak 57" in _card(html, "alr-0001")
    for aid in ("praise-1", "praise-2"):
        card = _card(html, aid)
        assert 'data-praise="true"' in card and PRAISE_BADGE in card, aid
    assert html.count(PRAISE_BADGE) == 2
    # Backlog: alr-0001, -0002, -0005, -0006 and the detected alert; the chain counts the same ones.
    backlog = int(re.search(r'id="backlog" data-backlog="(\d+)"', html).group(1))
    assert backlog == 5 == sum(r["backlog"] for r in chain["by_team"])
    assert chain["praise"]["alerts"] == 2


def test_an_owners_backlog_leaves_out_praise_routed_to_them(world):
    c, chain = world
    html = c.get("/inbox", params={"team": "product_quality"}).text
    assert re.findall(r'data-alert="([^"]+)"', html) == ["praise-2", "alr-0002", "alr-0001"]
    assert re.search(r'id="backlog" data-backlog="(\d+)"', html).group(1) == "2"
    assert "(praise alerts are not counted)" in html
    assert next(r["backlog"] for r in chain["by_team"] if r["team"] == "product_quality") == 2


def test_themes_table_shows_the_latest_episode_and_the_praise_badge(world):
    c, _ = world
    html = c.get("/themes").text
    row = re.search(r'<tr><td><a href="/trace/' + re.escape(DETECTED.replace(":", "%3A")) + r'">(.*?)</tr>', html, re.S)
    assert row, DETECTED
    assert '<td class="episode" data-last-seen="2026-03-08">to 2026-03-08 · 5 days · peak 30</td>' in row.group(0)
    praise_row = re.search(r'<tr><td><a href="/trace/praise-1">(.*?)</tr>', html, re.S).group(0)
    assert '<span class="badge pass">praise</span>' in praise_row
    assert html.count('<span class="badge pass">praise</span>') == 2


def test_inbox_stages_and_backlog_are_the_chains_with_overrides_and_inferred_fixes(tmp_path, live_server):
    """An overridden alert is a recorded decision and an alert whose fix came without its id (linked
    by topic and family, as `insightroi chain` links it) is fixed: neither waits in the inbox, and
    the inbox's backlog and fixed counts equal the chain's."""
    url = f"duckdb:///{tmp_path}/decisions.duckdb"
    seed_store(url)
    rows = [
        _row("ovr-1", "alert_delivered", "ovr-1", datetime(2026, 3, 4), "merchandising", {"kind": "problem"},
             "sizing", "fam-050"),
        _row("ovr-1:overridden", "overridden", "ovr-1", datetime(2026, 3, 5), "merchandising",
             {"reason": "known supplier issue"}, "sizing", "fam-050"),
        _row("inf-1", "alert_delivered", "inf-1", datetime(2026, 3, 4), "product_quality", {"kind": "problem"},
             "battery_power", "fam-060"),
        {**_row("inf-1:fix", "fix_deployed", None, datetime(2026, 3, 9), "product_quality", {"change": "new cell"},
                "battery_power", "fam-060"), "actor": "eng"},
    ]
    with open_store(url) as st:
        st.append("chain_events", pd.DataFrame(rows))
        chain = chain_summary(st)
    srv = live_server(create_app(url, token=TOKEN))
    with httpx.Client(base_url=srv.url, timeout=60, headers=AUTH) as c:
        items = {a["alert_id"]: a for a in c.get("/api/v1/alerts").json()["items"]}
        fixed = c.get("/api/v1/alerts", params={"status": "fixed"}).json()["items"]
        html = c.get("/inbox", params={"show": "all"}).text
    assert (items["ovr-1"]["status"], items["ovr-1"]["ignored"], items["ovr-1"]["in_backlog"]) == (
        "delivered", True, False)
    assert (items["inf-1"]["status"], items["inf-1"]["in_backlog"]) == ("fixed", False)
    assert items["alr-0001"]["first_event"] is not None and items["inf-1"]["in_backlog"] is False
    assert sorted(a["alert_id"] for a in fixed) == ["alr-0004", "inf-1"]
    assert len(fixed) == chain["funnel"]["fixed"]
    backlog = int(re.search(r'id="backlog" data-backlog="(\d+)"', html).group(1))
    # alr-0001, -0002, -0005 and -0006 wait; -0003 was acted on and -0004 fixed.
    assert backlog == 4 == sum(r["backlog"] for r in chain["by_team"])
