"""Materialising rows (orders, feedback, tickets, refunds, traffic, labels) from the cell world.

Rows are built one chunk of days at a time so memory stays bounded at any scale. Every order's
attributes (time of day, customer, segment, region, quantity) are a pure function of its global
index, so a ticket written in a later chunk can point at an order from an earlier chunk without
keeping the orders in memory.
"""

from __future__ import annotations

import random
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from insightroi.demo._text import render_text
from insightroi.demo._world import (
    CATEGORIES, ORIGINS, PD, REGION_P, REGIONS, SEGMENT_P, SEGMENTS, TOPICS, TYPES, CellWorld, topic_mix,
)

__all__ = ["ChunkWriter", "arrow_schema"]

_US_PER_DAY = 86_400_000_000
_SOURCE = {"negrev": "review", "othrev": "review", "ticket": "ticket", "chat": "chat", "refund": "return"}
_SOURCES = ("review", "ticket", "chat", "return")
_LAG = {"negrev": (2, 21), "othrev": (2, 21), "ticket": (1, 11), "chat": (0, 8), "refund": (5, 26)}
_SENT = ("negative", "neutral", "positive")
_OFF = TOPICS.index("off_topic")
_PRAISE = TOPICS.index("praise")
_MINOR = [TOPICS.index(t) for t in ("sizing", "price_value", "shipping_delay", "damaged_packaging")]
_NEUTRAL3 = [TOPICS.index(t) for t in ("price_value", "sizing", "shipping_delay", "customer_service")]
_SECOND = [TOPICS.index(t) for t in ("customer_service", "price_value", "shipping_delay")]

_PA = {
    "string": pa.string(), "float64": pa.float64(), "int64": pa.int64(), "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"), "date": pa.date32(),
}


def arrow_schema(columns: dict[str, str]) -> pa.Schema:
    """Arrow schema for a store table's columns, minus the ingestion bookkeeping columns."""
    return pa.schema([(c, _PA[t]) for c, t in columns.items() if c not in ("ingested_at", "batch_id")])


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast, well-mixed integer hash (vectorised)."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _ids(prefix: str, idx: np.ndarray, width: int = 10) -> pa.Array:
    s = pc.utf8_lpad(pa.array(idx.astype(np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(pa.scalar(prefix), s, "")


def _take(labels: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(list(labels))).cast(pa.string())


class ChunkWriter:
    """Builds Arrow tables for one chunk of days of the observed (or a debug) policy."""

    def __init__(self, world: CellWorld, program, *, policy: str = "observed", text_pool: bool = False):
        self.w = world
        self.tmask = world.policy_mask(policy)
        self.n_obs = world.orders(self.tmask)
        K, D = self.n_obs.shape
        # Global order index: cells ordered by (day, sku).
        flat = self.n_obs.T.ravel()
        self.offsets = (np.cumsum(flat) - flat).reshape(D, K)
        day = np.arange(D)[None, :]
        has = np.where(self.n_obs > 0, day, -1)
        self.last_day = np.maximum.accumulate(has, axis=1)
        self.obs = {(k, o): world.count(k, o, self.tmask) for k in TYPES for o in ORIGINS}
        self.n_customers = max(1000, int(world.n_orders_target) // 3)
        self.key = np.uint64((world.seed * 0x2545F4914F6CDD1D + 17) % 2**63)
        self.epoch_day = (world.start - date(1970, 1, 1)).days
        self.owner = {t.topic: t.owner for t in program.taxonomy}
        self.text_pool = text_pool
        self._pool: dict[int, list[str]] = {}
        self._pool_rng = random.Random(world.seed * 7919 + 2)
        self.event_counter = 0
        self.sku_ids = pa.array(world.sku_ids)
        self.fam_of_sku = pa.array([world.fam_ids[f] for f in world.sku_fam])
        self.cat_of_sku = world.fam_cat[world.sku_fam]
        # per (category, type) base topic mix with product_defect removed (the flag split handles it)
        self.mix_no_pd = {}
        for c in range(len(CATEGORIES)):
            for k in ("negrev", "ticket", "chat", "refund"):
                m = topic_mix(k, CATEGORIES[c]).copy()
                m[PD] = 0
                self.mix_no_pd[(c, k)] = m / m.sum()

    # ---- order attributes as functions of the global order index ------------------------------
    def _order_attrs(self, idx: np.ndarray):
        h1 = _mix64(idx.astype(np.uint64) ^ self.key)
        sec = (h1 % np.uint64(86400)).astype(np.int64)
        cust = (_mix64(h1) % np.uint64(self.n_customers)).astype(np.int64)
        hc = _mix64(cust.astype(np.uint64) ^ self.key)
        u_seg = (hc % np.uint64(10_000)).astype(float) / 10_000
        u_reg = ((hc >> np.uint64(20)) % np.uint64(10_000)).astype(float) / 10_000
        seg = np.searchsorted(np.cumsum(SEGMENT_P), u_seg, side="right").clip(0, len(SEGMENTS) - 1)
        reg = np.searchsorted(np.cumsum(REGION_P), u_reg, side="right").clip(0, len(REGIONS) - 1)
        return sec, cust, seg, reg

    def _cust_ids(self, cust: np.ndarray) -> pa.Array:
        return _ids("C", cust, 9)

    def _ts(self, day: np.ndarray, sec: np.ndarray) -> pa.Array:
        us = (self.epoch_day + day.astype(np.int64)) * _US_PER_DAY + sec.astype(np.int64) * 1_000_000
        return pa.array(us, type=pa.timestamp("us", tz="UTC"))

    # ---- orders and traffic -------------------------------------------------------------------
    def orders(self, d0: int, d1: int) -> pa.Table:
        w = self.w
        cnt = self.n_obs[:, d0:d1].T.ravel()  # (days, sku) order
        K = self.n_obs.shape[0]
        cell = np.repeat(np.arange(cnt.size), cnt)
        t = d0 + cell // K
        k = cell % K
        starts = np.cumsum(cnt) - cnt
        j = np.arange(cell.size) - starts[cell]
        idx = self.offsets[t, k] + j
        nc = w.nc[k, t]
        common = j < nc
        jj = np.where(common, j, j - nc)
        q2 = np.where(common, w.q2c[k, t], w.q2x[k, t])
        q3 = np.where(common, w.q3c[k, t], w.q3x[k, t])
        qty = np.where(jj < q2, 2, np.where(jj < q2 + q3, 3, 1))
        sec, cust, seg, reg = self._order_attrs(idx)
        price = w.price_eff[k, t]
        cols = {
            "id": _ids("O", idx),
            "customer_id": self._cust_ids(cust),
            "sku": self.sku_ids.take(pa.array(k)),
            "sku_family": self.fam_of_sku.take(pa.array(k)),
            "segment": _take(SEGMENTS, seg),
            "region": _take(REGIONS, reg),
            "order_time": self._ts(t, sec),
            "quantity": pa.array(qty.astype(np.int64)),
            "revenue": pa.array(np.round(price * qty, 2)),
            "margin": pa.array(np.round((price - w.sku_cost[k]) * qty, 2)),
        }
        return pa.table(cols)

    def traffic(self, d0: int, d1: int) -> pa.Table:
        w = self.w
        s = w.sessions[:, d0:d1]
        k, tt = np.nonzero(s > 0)
        t = tt + d0
        dates = pa.array((self.epoch_day + t).astype(np.int32), type=pa.date32())
        ids = pc.binary_join_element_wise(self.sku_ids.take(pa.array(k)), dates.cast(pa.string()), "|")
        return pa.table({
            "id": ids, "date": dates, "sku": self.sku_ids.take(pa.array(k)),
            "sku_family": self.fam_of_sku.take(pa.array(k)), "region": pa.nulls(len(k), pa.string()),
            "sessions": pa.array(w.sessions[k, t].astype(np.int64)),
            "conversions": pa.array(self.n_obs[k, t].astype(np.int64)),
        })

    # ---- feedback events -----------------------------------------------------------------------
    def _labels(self, kind: str, origin: str, k: np.ndarray, rng: np.random.Generator):
        """Primary topic, secondary topic (-1 none), sentiment code, rating for one event group."""
        n = len(k)
        cat = self.cat_of_sku[k]
        prim = np.full(n, _OFF)
        sec = np.full(n, -1)
        sent = np.zeros(n, int)  # negative
        rating = np.full(n, np.nan)
        if kind == "negrev":
            rating = np.where(rng.random(n) < 0.65, 1.0, 2.0)
        if origin == "defect":
            prim = self.w.sku_defect_topic[k].copy()
            sec = np.where(rng.random(n) < 0.15, rng.choice(_SECOND, n), -1)
        elif origin == "outage":
            prim[:] = TOPICS.index("shipping_delay")
            sec = np.where(rng.random(n) < 0.15, TOPICS.index("customer_service"), -1)
        elif origin == "newtheme":
            prim[:] = TOPICS.index("counterfeit")
        elif kind == "othrev":
            r = rng.random(n)
            rating = np.where(r < 0.5, 5.0, np.where(r < 0.85, 4.0, 3.0))
            sent = np.where(rating >= 4, 2, 1)
            if origin == "base_pd":
                prim[:] = PD
            else:
                prim = np.where(rating >= 4, _PRAISE, np.where(rng.random(n) < 0.4, _OFF, rng.choice(_NEUTRAL3, n)))
                minor = (rating == 4) & (rng.random(n) < 0.3)
                sec = np.where(minor, rng.choice(_MINOR, n), -1)
                sec = np.where(sec == prim, -1, sec)
        else:
            if origin == "base_pd":
                prim[:] = PD
            else:
                for c in np.unique(cat):
                    m = cat == c
                    prim[m] = rng.choice(len(TOPICS), m.sum(), p=self.mix_no_pd[(int(c), kind)])
            mix2 = rng.random(n) < 0.2
            cand = rng.choice(_SECOND + [TOPICS.index("damaged_packaging")], n)
            sec = np.where(mix2 & (cand != prim) & (prim != _OFF), cand, -1)
            if kind != "negrev":
                sent = np.where(prim == _OFF, 1, 0)
        sec = np.where(prim == _OFF, -1, sec)
        return prim, sec, sent, rating

    def _texts(self, prim, sec, sent, src, cat, rng) -> list[str]:
        out = []
        prng = random.Random(int(rng.integers(2**63)))
        if not self.text_pool:
            for p, s, se, so, c in zip(prim.tolist(), sec.tolist(), sent.tolist(), src.tolist(), cat.tolist()):
                topics = () if p == _OFF else ((TOPICS[p],) if s < 0 else (TOPICS[p], TOPICS[s]))
                out.append(render_text(topics, _SENT[se], _SOURCES[so], CATEGORIES[c], prng))
            return out
        # Pool mode (large scales): a bounded set of pre-rendered texts per label key.
        key = ((((prim + 1) * 12 + (sec + 1)) * 3 + sent) * 4 + src) * 5 + cat
        uniq, inv = np.unique(key, return_inverse=True)
        pick = rng.integers(0, 1 << 30, len(key))
        texts = np.empty(len(key), dtype=object)
        for u_i, u in enumerate(uniq.tolist()):
            m = inv == u_i
            pool = self._pool.get(u)
            if pool is None:
                c = u % 5
                so = (u // 5) % 4
                se = (u // 20) % 3
                rest = u // 60
                s, p = rest % 12 - 1, rest // 12 - 1
                topics = () if p == _OFF else ((TOPICS[p],) if s < 0 else (TOPICS[p], TOPICS[s]))
                pool = [render_text(topics, _SENT[se], _SOURCES[so], CATEGORIES[c], self._pool_rng) for _ in range(64)]
                self._pool[u] = pool
            arr = np.array(pool, dtype=object)
            texts[m] = arr[pick[m] % len(pool)]
        return texts.tolist()

    def events(self, d0: int, d1: int, rng: np.random.Generator) -> dict[str, pa.Table]:
        """feedback, tickets, refunds and labels for events on days [d0, d1)."""
        w = self.w
        parts = []
        for ti, kind in enumerate(TYPES):
            for origin in ORIGINS:
                c = self.obs[(kind, origin)][:, d0:d1]
                if not c.any():
                    continue
                kk, tt = np.nonzero(c)
                rep = c[kk, tt]
                k = np.repeat(kk, rep)
                t = np.repeat(tt, rep) + d0
                prim, sec, sent, rating = self._labels(kind, origin, k, rng)
                parts.append((np.full(len(k), ti), k, t, prim, sec, sent, rating))
        if not parts:
            return {}
        typ, k, t, prim, sec, sent, rating = (np.concatenate(x) for x in zip(*parts))
        # Shuffle within the chunk so ids carry no information about the label.
        perm = rng.permutation(len(k))
        typ, k, t, prim, sec, sent, rating = (a[perm] for a in (typ, k, t, prim, sec, sent, rating))
        n = len(k)
        src = np.array([_SOURCES.index(_SOURCE[x]) for x in TYPES])[typ]
        lo = np.array([_LAG[x][0] for x in TYPES])[typ]
        hi = np.array([_LAG[x][1] for x in TYPES])[typ]
        lag = lo + (rng.random(n) * (hi - lo)).astype(int)
        t_o = self.last_day[k, np.clip(t - lag, 0, None)]
        t_o = np.where(t_o < 0, self.last_day[k, t], t_o)
        n_o = self.n_obs[k, t_o]
        oidx = self.offsets[t_o, k] + (rng.random(n) * n_o).astype(np.int64)
        osec, cust, seg, reg = self._order_attrs(oidx)
        same = t_o == t
        esec = np.where(same, osec + 1 + (rng.random(n) * (86399 - osec)).astype(np.int64),
                        (rng.random(n) * 86400).astype(np.int64))
        eidx = self.event_counter + np.arange(n)
        self.event_counter += n
        cat = self.cat_of_sku[k]
        texts = self._texts(prim, sec, sent, src, cat, rng)
        text_arr = pa.array(texts, type=pa.string())
        sku = self.sku_ids.take(pa.array(k))
        fam = self.fam_of_sku.take(pa.array(k))
        cust_ids = self._cust_ids(cust)
        segs = _take(SEGMENTS, seg)
        regs = _take(REGIONS, reg)
        ev_time = self._ts(t, esec)
        fb_ids = _ids("F", eidx)
        channel_by_src = {0: ("web", "app"), 1: ("email", "web_form", "phone"), 2: ("chat",), 3: ("returns_portal",)}
        chan_labels = ("web", "app", "email", "web_form", "phone", "chat", "returns_portal")
        chan = np.zeros(n, int)
        u = rng.random(n)
        for s_i, opts in channel_by_src.items():
            m = src == s_i
            pick = (u[m] * len(opts)).astype(int)
            chan[m] = np.array([chan_labels.index(o) for o in opts])[pick]
        locale_by_region = np.array([0, 0, 0, 2, 1])
        locale = _take(("en-US", "en-GB", "en-CA"), locale_by_region[reg])
        feedback = pa.table({
            "id": fb_ids, "source": _take(_SOURCES, src), "channel": _take(chan_labels, chan), "locale": locale,
            "product_id": pc.binary_join_element_wise(pa.scalar("P-"), sku, ""), "sku": sku, "sku_family": fam,
            "customer_id": cust_ids, "segment": segs, "region": regs, "event_time": ev_time,
            "rating": pa.array(rating, mask=np.isnan(rating)), "text": text_arr,
        })
        topics_list = [
            [] if p == _OFF else ([TOPICS[p]] if s < 0 else [TOPICS[p], TOPICS[s]])
            for p, s in zip(prim.tolist(), sec.tolist())
        ]
        labels = pa.table({
            "id": fb_ids, "true_topics": pa.array(topics_list, type=pa.list_(pa.string())),
            "true_sentiment": _take(_SENT, sent),
        })
        order_ids = _ids("O", oidx)
        # tickets
        m_t = typ == TYPES.index("ticket")
        it = np.flatnonzero(m_t)
        owners = np.array([self.owner.get(TOPICS[p], "support") for p in range(len(TOPICS))], dtype=object)
        hours = np.exp(rng.normal(np.log(20), 0.9, len(it)))
        opened_us = (self.epoch_day + t[it]) * _US_PER_DAY + esec[it] * 1_000_000
        tickets = pa.table({
            "id": _ids("T", eidx[it]), "customer_id": cust_ids.take(pa.array(it)),
            "order_id": order_ids.take(pa.array(it)), "sku": sku.take(pa.array(it)),
            "sku_family": fam.take(pa.array(it)), "segment": segs.take(pa.array(it)),
            "region": regs.take(pa.array(it)), "channel": _take(chan_labels, chan[it]),
            "opened_at": pa.array(opened_us, type=pa.timestamp("us", tz="UTC")),
            "closed_at": pa.array(opened_us + (hours * 3.6e9).astype(np.int64), type=pa.timestamp("us", tz="UTC")),
            "handle_minutes": pa.array(np.round(np.exp(rng.normal(np.log(12), 0.6, len(it))), 1)),
            "deflected": pa.array(rng.random(len(it)) < 0.12),
            "team": pa.array(owners[prim[it]].tolist(), type=pa.string()),
        })
        m_r = typ == TYPES.index("refund")
        ir = np.flatnonzero(m_r)
        refunds = pa.table({
            "id": _ids("R", eidx[ir]), "order_id": order_ids.take(pa.array(ir)),
            "customer_id": cust_ids.take(pa.array(ir)), "sku": sku.take(pa.array(ir)),
            "sku_family": fam.take(pa.array(ir)), "segment": segs.take(pa.array(ir)),
            "region": regs.take(pa.array(ir)),
            "kind": _take(("return", "refund"), (rng.random(len(ir)) < 0.3).astype(int)),
            "event_time": ev_time.take(pa.array(ir)),
            "amount": pa.array(w.price_eff[k[ir], t[ir]]),
            "reason": text_arr.take(pa.array(ir)),
        })
        return {"feedback": feedback, "labels": labels, "tickets": tickets, "refunds": refunds}
