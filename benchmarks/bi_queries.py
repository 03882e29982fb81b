"""BI query stage: each dashboard query (benchmarks.queries) as bi_reader,
over many random organizations, and the index its plan uses.

Random organizations are mostly small (the generator's long tail), so the
largest organization (`org_00001`, 750 partners) is always in the sample, and its
plans are the ones stored: the worst case a dashboard meets.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict

import psycopg

from benchmarks import queries
from benchmarks.stats import latency_summary

LARGEST_ORG = "org_00001"


def plan_indexes(plan: dict) -> tuple[list[str], list[str]]:
    """(index names, node types) found anywhere in an EXPLAIN (FORMAT JSON) plan tree."""
    indexes: list[str] = []
    nodes: list[str] = []
    stack = [plan]
    while stack:
        node = stack.pop()
        nodes.append(node["Node Type"])
        if "Index Name" in node:
            indexes.append(node["Index Name"])
        stack.extend(node.get("Plans", []))
    return indexes, nodes


def explain(conn: psycopg.Connection, query: queries.DashboardQuery, params: dict) -> dict:
    """The plan's index names, with their definitions (readable names, `<table>__<columns>_idx`)."""
    (doc,) = conn.execute("explain (format json) " + query.sql, params).fetchone()
    plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
    indexes, nodes = plan_indexes(plan)
    definitions = dict(
        conn.execute(
            "select indexname, tablename || ' ' || substring(indexdef from '\\(.*\\)$')"
            " from pg_indexes where indexname = any(%s)",
            [indexes],
        ).fetchall()
    )
    return {
        "indexes": indexes,
        "index_columns": [definitions.get(name, name) for name in indexes],
        "seq_scan": "Seq Scan" in nodes,
        "top_node": plan["Node Type"],
    }


def run(reader_url: str, samples: int = 200, seed: int = 7) -> dict:
    """Latency per query (p50/p95/p99 over `samples` orgs) and the plans, as bi_reader."""
    rng = random.Random(seed)
    timings: dict[str, list[float]] = defaultdict(list)
    with psycopg.connect(reader_url, autocommit=True) as conn:
        span = queries.data_span(conn)
        orgs = queries.organizations(conn)
        sample = [LARGEST_ORG] + [rng.choice(orgs) for _ in range(samples - 1)]
        # One untimed pass: the first query of a connection pays for catalog lookups.
        queries.run_dashboard(conn, sample[0], span, rng)
        for org_id in sample:
            for name, seconds in queries.run_dashboard(conn, org_id, span, rng):
                timings[name].append(seconds)
        plans = {
            q.name: explain(conn, q, queries.first_params(q, LARGEST_ORG, span, rng))
            for q in queries.QUERIES
        }
    return {
        "orgs_sampled": len(sample),
        "organizations": len(orgs),
        "queries": {name: latency_summary(values) for name, values in timings.items()},
        "plans": plans,
    }
