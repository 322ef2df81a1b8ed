"""``insightroi assign`` on a real DuckDB store: stratified, reproducible, idempotent assignments.

Also the sample-ratio-mismatch rate of the hash assignment itself: over 1,000 unstratified
Bernoulli assignments with different salts the SRM test's p < 0.05 rate must be ~5%.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from scipy import stats
from typer.testing import CliRunner

from helpers.cli_shell import stage_app
from insightroi.experiments import assign
from insightroi.experiments._assign_cli import register
from insightroi.ingest import ingest_frame
from insightroi.program import starter_program_text
from insightroi.stats._diagnostics import srm_test
from insightroi.store import open_store

STARTER_EXPERIMENT = 'unit = "sku_family"\nsalt = "theme-alerts-2025"'


def _app() -> typer.Typer:
    return stage_app(register)


def _program(tmp_path, *, unit="customer", salt="exp-salt", strata=("region", "segment"), name="p.toml"):
    text = starter_program_text()
    assert STARTER_EXPERIMENT in text  # the starter's [experiment] this test rewrites
    lines = f'unit = "{unit}"\nsalt = "{salt}"\nstrata = {json.dumps(list(strata))}'
    path = tmp_path / name
    path.write_text(text.replace(STARTER_EXPERIMENT, lines), encoding="utf-8")
    return path


def _units_csv(path, n, *, seed=0, start=0):
    """``n`` customers with a region (4, unequal) and a segment (3); the smallest strata hold a few units."""
    rng = np.random.default_rng(seed)
    regions = rng.choice(["us", "eu", "apac", "latam"], n, p=[0.5, 0.3, 0.18, 0.02])
    segments = rng.choice(["new", "returning", "vip"], n, p=[0.45, 0.45, 0.10])
    return _write({f"C{start + i:05d}": (r, s) for i, (r, s) in enumerate(zip(regions, segments))}, path)


def _write(rows, path):
    path.write_text("customer_id,region,segment\n" + "".join(f"{u},{r},{s}\n" for u, (r, s) in rows.items()),
                    encoding="utf-8")
    return rows


def _run(*args):
    out = CliRunner().invoke(_app(), ["assign", *map(str, args)])
    return out


def _run_json(*args) -> dict:
    out = _run(*args, "--json")
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def _stored(url) -> dict[str, str]:
    with open_store(url) as st:
        df = st.table("assignments").execute()
    assert df["id"].is_unique and df["unit_id"].is_unique
    return dict(zip(df["unit_id"], df["arm"]))


def _check_within_one(arms: dict[str, str], units: dict[str, tuple]) -> int:
    """Assert every stratum treats floor or ceil of half its units; return the number of strata."""
    strata: dict[tuple, list[str]] = {}
    for u, s in units.items():
        strata.setdefault(s, []).append(arms[u])
    for s, a in strata.items():
        treated = sum(x == "treatment" for x in a)
        assert abs(treated - len(a) / 2) <= 0.5, (s, treated, len(a))
    return len(strata)


def test_csv_units_are_stratified_stored_and_rerun_adds_nothing(tmp_path):
    url = f"duckdb:///{tmp_path}/s.duckdb"
    prog = _program(tmp_path)
    units = _units_csv(tmp_path / "units.csv", 1000)
    d = _run_json("--program", prog, "--store", url, "--units", tmp_path / "units.csv")
    assert (d["units"], d["new"], d["kept"], d["written"]) == (1000, 1000, 0, 1000)
    assert d["strata"] == ["region", "segment"] and d["salt"] == "exp-salt"
    arms = _stored(url)
    assert len(arms) == 1000 and set(arms) == set(units)
    n_strata = _check_within_one(arms, units)
    sizes = [r["n"] for r in d["balance"][:-1]]
    # Small and odd-sized strata are where "within one unit" bites.
    assert n_strata == 12 and min(sizes) <= 5 and sum(n % 2 for n in sizes) >= 3
    # The printed balance table is what the store holds.
    for r in d["balance"][:-1]:
        members = [u for u, s in units.items() if list(s) == r["stratum"]]
        assert r["n"] == len(members) and r["treated"] == sum(arms[u] == "treatment" for u in members)
    overall = d["balance"][-1]
    assert overall["stratum"] == [] and overall["n"] == 1000 and abs(overall["treated"] - 500) <= 6
    assert d["srm"]["status"] == "pass" and d["srm"]["p_value"] > 0.5

    again = _run_json("--program", prog, "--store", url, "--units", tmp_path / "units.csv")
    assert (again["new"], again["kept"], again["written"]) == (0, 1000, 0)
    assert again["balance"] == d["balance"]
    assert _stored(url) == arms

    # New units later: only they get rows, nobody moves, every stratum is still within one unit.
    more = _write({**units, **_units_csv(tmp_path / "new.csv", 150, seed=5, start=1000)}, tmp_path / "more.csv")
    grown = _run_json("--program", prog, "--store", url, "--units", tmp_path / "more.csv", "--assigned-at", "2025-08-01")
    assert (grown["new"], grown["kept"], grown["written"]) == (150, 1000, 150)
    after = _stored(url)
    assert len(after) == 1150 and all(after[u] == arms[u] for u in arms)
    _check_within_one(after, more)
    # Late units enter at the time given; the first ones at the experiment's start (2025-07-01).
    with open_store(url) as st:
        df = st.table("assignments").execute()
    when = dict(zip(df["unit_id"], df["assigned_at"].dt.strftime("%Y-%m-%dT%H:%M")))
    assert {when[u] for u in units} == {"2025-07-01T00:00"}
    assert {when[u] for u in more if u not in units} == {"2025-08-01T00:00"}


def test_same_salt_same_arms_new_salt_new_assignment(tmp_path):
    _units_csv(tmp_path / "units.csv", 1000, seed=1)
    a = _stored_after(tmp_path, "a", salt="s1")
    b = _stored_after(tmp_path, "b", salt="s1")
    c = _stored_after(tmp_path, "c", salt="s2")
    assert a == b
    agree = np.mean([a[u] == c[u] for u in a])
    # Independent balanced assignments agree on half the units (SE 0.016); a salt ignored gives 1.
    assert 0.42 < agree < 0.58
    # Without strata the CLI's arms are the library's Bernoulli hash arms of the same ids and salt.
    d = _stored_after(tmp_path, "d", salt="s1", strata=())
    ids = sorted(d)
    assert [d[u] for u in ids] == list(assign(ids, "s1", 0.5))


def _stored_after(tmp_path, tag, *, salt, strata=("region", "segment")):
    url = f"duckdb:///{tmp_path}/{tag}.duckdb"
    prog = _program(tmp_path, salt=salt, strata=strata, name=f"{tag}.toml")
    out = _run("--program", prog, "--store", url, "--units", tmp_path / "units.csv")
    assert out.exit_code == 0, out.output
    return _stored(url)


def test_units_from_the_store_with_strata_from_products(tmp_path):
    url = f"duckdb:///{tmp_path}/s.duckdb"
    prog = _program(tmp_path, unit="sku_family", strata=("category",))
    rng = np.random.default_rng(2)
    families = [f"FAM-{i:03d}" for i in range(90)]
    cats = {f: c for f, c in zip(families, rng.choice(["shoes", "bags", "hats"], 90, p=[0.5, 0.4, 0.1]))}
    with open_store(url) as st:
        ingest_frame(st, "products", [{"sku": f"{f}-1", "sku_family": f, "category": cats[f]} for f in families],
                     program=prog)
        # Orders name 80 of the 90 families (the units); each family's category lives in products.
        orders = [{"id": f"o{i}", "sku_family": families[i % 80], "order_time": "2025-06-01T10:00:00Z",
                   "revenue": 10.0} for i in range(400)]
        assert ingest_frame(st, "orders", orders, program=prog).landed == 400

    dry = _run_json("--program", prog, "--store", url, "--dry-run")
    assert dry["dry_run"] and dry["written"] == 0 and dry["units"] == 80
    with open_store(url) as st:
        assert st.count("assignments") == 0

    d = _run_json("--program", prog, "--store", url)
    assert d["units"] == 80 and d["written"] == 80 and d["source"] == "store table(s) orders"
    assert d["balance"] == dry["balance"]  # the dry run showed what was then written
    arms = _stored(url)
    assert set(arms) == set(families[:80])
    assert _check_within_one(arms, {f: (cats[f],) for f in families[:80]}) == 3
    assert [r["stratum"] for r in d["balance"][:-1]] == [["bags"], ["hats"], ["shoes"]]

    out = _run("--program", prog, "--store", url)
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "80 keep the arm stored earlier, 0 new" in text and "SRM check: pass" in text
    with open_store(url) as st:
        assert st.count("assignments") == 80


def test_srm_false_positive_rate_of_hash_assignment():
    # 1,000 experiments (salts) of 1,000 units each, unstratified Bernoulli hash at share 0.5: if
    # the hash is uniform and independent across salts, SRM's p < 0.05 in ~5% of them.
    ids = [f"unit-{i:04d}" for i in range(1000)]
    p = np.array([srm_test([(a == "treatment").sum(), (a == "control").sum()], [0.5, 0.5]).p_value
                  for a in (assign(ids, f"srm-salt-{r}", 0.5) for r in range(1000))])
    rate = float((p < 0.05).mean())
    # Counts are whole, so the test's exact size under a fair coin is P(|T - 500| >= 31) = 5.4%,
    # not 5%; the 99.9% binomial band of 1,000 experiments is drawn around that.
    t = np.arange(1001)
    size = float(stats.binom.pmf(t, 1000, 0.5)[stats.chi2.sf((2 * t - 1000.0) ** 2 / 1000, 1) < 0.05].sum())
    lo, hi = stats.binom.ppf([0.0005, 0.9995], 1000, size) / 1000
    print(f"SRM p < 0.05 in {rate:.1%} of 1,000 hash assignments (exact size {size:.2%}, 99.9% band {lo:.1%}-{hi:.1%})")
    assert 0.05 < size < 0.056 and lo <= rate <= hi


@pytest.mark.parametrize(
    "content, expected",
    [
        ("customer_id,region\nC1,us\nC2,eu\n", ["units.csv", "'segment'", "experiment.strata"]),
        ("cust,region,segment\nC1,us,new\n", ["units.csv", "'unit_id'", "'customer_id'"]),
        ("customer_id,region,segment\nC1,us,new\n,eu,vip\n", ["units.csv", "row 3", "'customer_id'", "empty"]),
        ("customer_id,region,segment\nC1,us,new\nC2,eu\n", ["units.csv", "row 3", "2 fields"]),
        ("customer_id,region,segment\nC1,us,new\nC1,eu,new\n", ["units.csv", "rows 2 and 3", "'region'"]),
        ("", ["units.csv", "empty file"]),
    ],
)
def test_malformed_units_file_is_a_clear_error_and_writes_nothing(tmp_path, content, expected):
    url = f"duckdb:///{tmp_path}/s.duckdb"
    prog = _program(tmp_path)
    (tmp_path / "units.csv").write_text(content, encoding="utf-8")
    out = _run("--program", prog, "--store", url, "--units", tmp_path / "units.csv")
    assert out.exit_code == 1, out.output
    text = " ".join(out.output.split())
    assert "Traceback" not in text
    for piece in expected:
        assert piece in text, (piece, text)
    with open_store(url) as st:
        assert st.count("assignments") == 0


def test_customer_listed_by_email_is_assigned_under_its_pseudonym(tmp_path, monkeypatch):
    monkeypatch.setenv("INSIGHTROI_PII_KEY", "assign-cli-test-key-0123456789abcdef")
    url = f"duckdb:///{tmp_path}/s.duckdb"
    prog = _program(tmp_path, strata=("region",))
    rows = {"Jane.Doe@Example.com": ("us",), **{f"C{i:03d}": ("us" if i % 2 else "eu",) for i in range(40)}}
    (tmp_path / "units.csv").write_text("customer_id,region\n" + "".join(f"{u},{r}\n" for u, (r,) in rows.items()),
                                        encoding="utf-8")
    d = _run_json("--program", prog, "--store", url, "--units", tmp_path / "units.csv")
    assert d["written"] == 41 and any("pseudonym" in n for n in d["notes"])
    with open_store(url) as st:
        df = st.table("assignments").execute()
        # The store's orders hold the same customer under the same pseudonym: the units read from
        # there get the very arm the file gave.
        ingest_frame(st, "orders", [{"id": "o1", "customer_id": "jane.doe@example.com", "region": "us",
                                     "order_time": "2025-06-01T10:00:00Z", "revenue": 5.0}], program=prog)
    raw = df.to_csv()
    assert "Jane.Doe" not in raw and "example.com" not in raw.lower()
    pseudo = [u for u in df["unit_id"] if u.startswith("pii_")]
    assert len(pseudo) == 1
    again = _run_json("--program", prog, "--store", url, "--units", tmp_path / "units.csv")
    assert (again["new"], again["written"]) == (0, 0)
    from_store = _run_json("--program", prog, "--store", url, "--dry-run")
    assert (from_store["units"], from_store["kept"], from_store["new"]) == (1, 1, 0)


def test_option_errors_name_what_is_wrong(tmp_path):
    url = f"duckdb:///{tmp_path}/s.duckdb"
    prog = _program(tmp_path)
    _units_csv(tmp_path / "units.csv", 10)
    cases = [
        (["--units", tmp_path / "units.csv", "--from-table", "orders"], "either --units FILE or --from-table"),
        (["--from-table", "products"], "store table 'products' has no column 'customer_id'"),
        (["--units", tmp_path / "units.csv", "--assigned-at", "yesterday"], "--assigned-at 'yesterday' is not an ISO"),
        (["--units", tmp_path / "missing.csv"], "missing.csv: cannot read the units file"),
    ]
    for args, message in cases:
        out = _run("--program", prog, "--store", url, *args)
        assert out.exit_code == 1 and message in " ".join(out.output.split()), (args, out.output)
