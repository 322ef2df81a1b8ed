"""A daily feedback stream made of human-written real text, with planted complaint episodes and
praise spikes whose truth is known (test and benchmark helper for issue #18's alert figures).

Texts (``/work/shared/reference``, read its README and SOURCE.md files):

* background: every H&G tweet (``sentiment/tweets_GroundTruth.txt``, 4,200, source ``social``)
  and every UCI Amazon / Yelp sentence (``sentiment/uci_sentences``, 2,000, source ``review``);
* praise spikes: the positive part of the same sets by their HUMAN label (UCI label 1, tweets
  with a mean rating >= 2.0 on -4..+4);
* complaint episodes: BANKING77 ``train.csv`` customer queries of intents chosen by their meaning
  before any classifier ran on them (:data:`EPISODE_INTENTS`): card_arrival /
  card_delivery_estimate are late deliveries (``shipping_delay``), card_not_working /
  contactless_not_working / virtual_card_not_working are faults (``product_defect``), and the
  fee intents are cost complaints (``price_value``). The same pools also feed a low base rate in
  every family, so a topic has a baseline to rise above, as complaints do in a real stream.

Nothing is fitted or tuned on any of these rows: classify and detect run with their defaults, and
the test split of BANKING77 is never read.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["EPISODE_INTENTS", "REFERENCE", "RealTextWorld", "build_world", "load_pools", "planted_text_reading",
           "run_stages", "score_alerts"]

REFERENCE = Path("/work/shared/reference")
EPISODE_INTENTS = {
    "shipping_delay": ["card_arrival", "card_delivery_estimate"],
    "product_defect": ["card_not_working", "contactless_not_working", "virtual_card_not_working"],
    "price_value": ["card_payment_fee_charged", "transfer_fee_charged", "exchange_charge", "top_up_by_card_charge"],
}
DAY0 = date(2025, 1, 6)  # a Monday: weekday effects line up with the calendar


def load_pools(reference: Path = REFERENCE) -> dict[str, list[tuple[str, str]]]:
    """Real texts by pool: ``background``, ``positive`` and one pool per episode topic.

    Returns
    -------
    dict
        Pool name -> list of ``(text, source)``; the feedback ``source`` each text is stored with.
    """
    uci = pd.read_csv(reference / "sentiment/uci_sentences/uci_sentiment_sentences_amazon_yelp.csv")
    tw = pd.read_csv(reference / "sentiment/tweets_GroundTruth.txt", sep="\t", header=None,
                     names=["id", "rating", "text"], quoting=3, dtype={"text": str})
    tw = tw.dropna(subset=["text"])
    bk = pd.read_csv(reference / "complaints/banking77/train.csv")
    pools = {
        "background": [(t, "review") for t in uci.text] + [(t, "social") for t in tw.text],
        "positive": [(t, "review") for t in uci.text[uci.label == 1]] + [(t, "social") for t in tw.text[tw.rating >= 2.0]],
    }
    for topic, intents in EPISODE_INTENTS.items():
        pools[topic] = [(t, "chat") for t in bk.text[bk.category.isin(intents)]]
    return pools


@dataclass(frozen=True)
class RealTextWorld:
    """Where a built world lives and what was planted in it."""

    dir: Path
    feedback_csv: Path
    program: Path
    truth: dict


def _plan(rng, n_days: int, n_families: int, n_episodes: int, n_praise: int, episode_per_day: tuple[float, float],
          praise_per_day: tuple[float, float]) -> tuple[list[dict], list[dict]]:
    """Episodes and praise spikes on a grid that never overlaps two of them in one family."""
    topics = list(EPISODE_INTENTS)
    slots = []  # (family, start): each family's days after the 28-day warm-up cut into 16-day blocks
    for f in range(n_families):
        for s in range(35, n_days - 16, 16):
            slots.append((f, s))
    order = rng.permutation(len(slots))
    need = n_episodes + n_praise
    if need > len(slots):
        raise ValueError(f"{need} events do not fit {len(slots)} slots; add days or families")
    episodes, praise = [], []
    for i, j in enumerate(order[:need]):
        f, s = slots[j]
        s += int(rng.integers(0, 4))
        if i < n_episodes:
            length = int(rng.integers(3, 11))
            # by default 2-7 extra complaints a day in a family of ~30 items a day: from hard to plain
            episodes.append({"sku_family": f"FAM-{f:02d}", "topic": topics[i % len(topics)], "start": s,
                             "end": s + length - 1, "extra_per_day": float(rng.uniform(*episode_per_day))})
        else:
            praise.append({"sku_family": f"FAM-{f:02d}", "start": s, "end": s + int(rng.integers(3, 6)) - 1,
                           "extra_per_day": float(rng.uniform(*praise_per_day))})
    return episodes, praise


def build_world(out_dir: Path, *, n_days: int = 120, n_families: int = 6, per_day: float = 30.0,
                base_complaints: float = 0.4, n_episodes: int = 12, n_praise: int = 2,
                episode_per_day: tuple[float, float] = (2.0, 7.0), praise_per_day: tuple[float, float] = (8.0, 14.0),
                seed: int = 0, reference: Path = REFERENCE) -> RealTextWorld:
    """Write a real-text feedback stream, its program file and truth to ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Folder to write (``feedback.csv``, ``insightroi.toml``, ``truth.json``).
    n_days, n_families : int
        Length of the stream and number of SKU families (``FAM-00`` ...).
    per_day : float
        Mean background items per family and day (Poisson).
    base_complaints : float
        Mean items per family, day and episode topic drawn from that topic's pool outside episodes.
    n_episodes, n_praise : int
        Complaint episodes (topics in turn) and praise spikes planted.
    episode_per_day, praise_per_day : (float, float)
        Range of the extra items a day an episode / a praise spike adds (uniform per event).
    seed : int

    Returns
    -------
    RealTextWorld
        ``truth`` holds the episodes and praise spikes with ISO days and the rows planted.
    """
    from insightroi.program import starter_program_text

    rng = np.random.default_rng(seed)
    pools = load_pools(reference)
    episodes, praise = _plan(rng, n_days, n_families, n_episodes, n_praise, episode_per_day, praise_per_day)
    rows = []

    def add(pool: str, fam: str, d: int, n: int, tag: str) -> None:
        src = pools[pool]
        for i in rng.integers(0, len(src), n):
            text, source = src[int(i)]
            t = datetime.combine(DAY0 + timedelta(days=d), datetime.min.time()) + timedelta(
                seconds=int(rng.integers(6 * 3600, 23 * 3600)))
            rows.append({"id": f"rt-{len(rows):07d}", "source": source, "sku_family": fam, "text": text,
                         "event_time": t.isoformat(sep=" "), "_tag": tag, "_pool": pool})

    for f in range(n_families):
        fam = f"FAM-{f:02d}"
        for d in range(n_days):
            add("background", fam, d, int(rng.poisson(per_day)), "background")
            for topic in EPISODE_INTENTS:
                add(topic, fam, d, int(rng.poisson(base_complaints)), "base")
    for e in episodes:
        n0 = len(rows)
        for d in range(e["start"], e["end"] + 1):
            add(e["topic"], e["sku_family"], d, int(rng.poisson(e["extra_per_day"])), "episode")
        e["planted"] = len(rows) - n0
    for p in praise:
        n0 = len(rows)
        for d in range(p["start"], p["end"] + 1):
            add("positive", p["sku_family"], d, int(rng.poisson(p["extra_per_day"])), "praise")
        p["planted"] = len(rows) - n0
    iso = lambda d: (DAY0 + timedelta(days=int(d))).isoformat()  # noqa: E731
    truth = {
        "texts": {"background": "H&G tweets (all 4,200) + UCI Amazon/Yelp sentences (all 2,000)",
                  "praise": "UCI label 1 + tweets with human mean >= 2.0",
                  "episodes": {k: f"BANKING77 train.csv intents {', '.join(v)}" for k, v in EPISODE_INTENTS.items()}},
        "n_days": n_days, "n_families": n_families, "start": iso(0), "end": iso(n_days - 1),
        "episodes": [{**e, "start": iso(e["start"]), "end": iso(e["end"]), "extra_per_day": round(e["extra_per_day"], 2)}
                     for e in episodes],
        "praise_spikes": [{**p, "start": iso(p["start"]), "end": iso(p["end"]),
                           "extra_per_day": round(p["extra_per_day"], 2)} for p in praise],
        "n_feedback": len(rows),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df.drop(columns=["_tag", "_pool"]).to_csv(out_dir / "feedback.csv", index=False)
    # which rows were planted from which pool: read only when scoring, never by the stages
    df.loc[df._tag != "background", ["id", "_tag", "_pool", "sku_family"]].rename(
        columns={"_tag": "tag", "_pool": "pool"}).to_csv(out_dir / "planted.csv", index=False)
    (out_dir / "insightroi.toml").write_text(starter_program_text(), encoding="utf-8")
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return RealTextWorld(out_dir, out_dir / "feedback.csv", out_dir / "insightroi.toml", truth)


def _cli(args: list[str], cwd: Path, in_process: bool = False) -> str:
    if in_process:
        # the same Typer app the console script runs, without paying a fresh interpreter per command
        from typer.testing import CliRunner

        from insightroi.cli import app

        res = CliRunner().invoke(app, args, catch_exceptions=False)
        if res.exit_code != 0:
            raise RuntimeError(f"insightroi {' '.join(args)} failed ({res.exit_code}):\n{res.output}")
        return res.stdout
    r = subprocess.run([sys.executable, "-m", "insightroi", *args], cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"insightroi {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def run_stages(world_dir: Path, store: Path, *, files: dict[str, Path], method: str = "lexicon",
               in_process: bool = False) -> dict:
    """Ingest, classify and detect with the ``insightroi`` CLI, as a user would, into a fresh store.

    Parameters
    ----------
    world_dir : Path
        Folder holding ``insightroi.toml`` (the commands run there).
    store : Path
        DuckDB file to create (must not exist).
    files : dict
        Table kind -> file to ingest, in order (``feedback`` first).
    method : str
        ``insightroi classify --method``.
    in_process : bool
        Invoke the CLI's Typer app in this interpreter (a test's time budget) instead of one
        ``python -m insightroi`` process per command (what a user types; the benchmark's way).

    Returns
    -------
    dict
        ``detect --json`` output (``alerts`` routed to owners, ``withheld_control`` ...), with
        ``classify`` (the classify section) added.
    """
    if Path(store).exists():
        raise FileExistsError(store)
    url = f"duckdb:///{Path(store).resolve()}"
    prog = str(Path(world_dir).resolve() / "insightroi.toml")
    for kind, path in files.items():
        _cli(["ingest", kind, str(Path(path).resolve()), "--store", url, "--program", prog], world_dir, in_process)
    cls = json.loads(_cli(["classify", "--store", url, "--program", prog, "--method", method, "--json"], world_dir,
                          in_process))
    det = json.loads(_cli(["detect", "--store", url, "--program", prog, "--json"], world_dir, in_process))
    det["classify"] = cls
    return det


def score_alerts(alerts: list[dict], episodes: list[dict], praise_spikes: list[dict] = (), *,
                 praise_owner: str, grace_days: int = 1) -> dict:
    """Precision and recall of complaint episodes, and praise spikes that reached an owner.

    An episode (``sku_family``, ``topic``, ``start`` .. ``end``, ISO days) is found when an alert
    sent to an owner (owner not ``praise_owner``) has its family and topic and a day within
    [start - grace, end + grace]; one alert counts per episode, so a second alert on the same
    episode is a false one (an owner paged twice for one defect). Precision = episodes found /
    alerts sent to owners. A praise spike reaches an owner when an owner-bound alert that matches
    no episode falls in its family within its days +- grace; an alert on the ``praise`` topic sent
    to an owner counts too (praise is good news, never a problem to fix).

    Returns
    -------
    dict
        episodes, found, recall, owner_alerts, precision, praise_alerts (to ``praise_owner``),
        praise_spikes, praise_spikes_seen (spikes with an alert in the positive stream),
        praise_to_owners, per_topic {topic: [found, episodes]}, missed (the episodes not found,
        each with ``in_praise_stream``), episodes_in_praise_stream (missed episodes whose alert
        went to ``praise_owner`` instead).
    """
    g = timedelta(days=grace_days)
    owner = [a for a in alerts if a["owner"] != praise_owner]
    praise = [a for a in alerts if a["owner"] == praise_owner]
    day = lambda a: date.fromisoformat(str(a["day"])[:10])  # noqa: E731
    used, found, per_topic, missed = set(), 0, {}, []
    for e in episodes:
        s, t = date.fromisoformat(e["start"]) - g, date.fromisoformat(e["end"]) + g
        hits = [i for i, a in enumerate(owner) if a["sku_family"] == e["sku_family"] and a["topic"] == e["topic"]
                and s <= day(a) <= t and i not in used]
        pt = per_topic.setdefault(e["topic"], [0, 0])
        pt[1] += 1
        if hits:
            used.add(hits[0])
            found += 1
            pt[0] += 1
        else:
            # found by the detector but sent to the positive stream: a complaint nobody is paged for
            routed_to_praise = any(a["sku_family"] == e["sku_family"] and a["topic"] == e["topic"]
                                   and s <= day(a) <= t for a in praise)
            missed.append({**e, "in_praise_stream": routed_to_praise})
    matched_any = {i for i, a in enumerate(owner) for e in episodes
                   if a["sku_family"] == e["sku_family"] and a["topic"] == e["topic"]
                   and date.fromisoformat(e["start"]) - g <= day(a) <= date.fromisoformat(e["end"]) + g}
    to_owner, seen = set(), 0
    for p in praise_spikes:
        s, t = date.fromisoformat(p["start"]) - g, date.fromisoformat(p["end"]) + g
        to_owner |= {i for i, a in enumerate(owner) if i not in matched_any and a["sku_family"] == p["sku_family"]
                     and s <= day(a) <= t}
        seen += any(a["sku_family"] == p["sku_family"] and s <= day(a) <= t for a in praise)
    to_owner |= {i for i, a in enumerate(owner) if a["topic"] == "praise"}
    return {"episodes": len(episodes), "found": found, "recall": found / len(episodes) if episodes else None,
            "owner_alerts": len(owner), "precision": found / len(owner) if owner else None,
            "praise_alerts": len(praise), "praise_spikes": len(praise_spikes), "praise_spikes_seen": int(seen),
            "praise_to_owners": len(to_owner), "per_topic": per_topic, "missed": missed,
            "episodes_in_praise_stream": sum(m["in_praise_stream"] for m in missed)}


def planted_text_reading(store: Path, world_dir: Path, model_versions: dict) -> dict:
    """How the classifier read the planted texts: why an episode can be missed before detection.

    Returns
    -------
    dict
        Per episode topic (rows planted in its episodes): n, share given that topic as primary
        label, share read positive and negative by the sentiment model; and the same for the
        praise-spike rows (``praise``: share given the ``praise`` topic).
    """
    from insightroi.store import open_store

    planted = pd.read_csv(Path(world_dir) / "planted.csv")
    planted = planted[planted.tag.isin(["episode", "praise"])]
    with open_store(f"duckdb:///{Path(store).resolve()}") as st:
        ins = st.table("insights")
        rows = ins.filter(ins.feedback_id.isin(list(planted.id))
                          & ins.model_version.isin([model_versions["topic"], model_versions["sentiment"]])
                          ).select("feedback_id", "task", "label").execute()
    lab = rows.pivot_table(index="feedback_id", columns="task", values="label", aggfunc="first")
    m = planted.merge(lab, left_on="id", right_index=True, how="left")
    out = {}
    for pool, g in m.groupby("pool"):
        target = "praise" if pool == "positive" else pool
        out["praise" if pool == "positive" else pool] = {
            "n": int(len(g)), "topic_share": float((g.topic == target).mean()),
            "positive_share": float((g.sentiment == "positive").mean()),
            "negative_share": float((g.sentiment == "negative").mean())}
    return out
