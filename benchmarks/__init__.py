"""Benchmark harness (`make bench`, `python -m benchmarks`): figures for docs/contract.md §7.

One module per stage — `ingest`, `refresh` (dbt full and incremental runs),
`latency` (landing → marts with the Dagster daemon), `bi_queries` (dashboard
query latency and plans), `bi_load` (concurrent BI sessions during a refresh) —
plus the shared pieces: `datasets` (generated data, cached), `server` (the
database the benchmark runs on), `queries` (the dashboard queries themselves),
`machine`, `stats` and `report` (docs/benchmarks.md and .json). `runner` ties
them together. Nothing here runs in `make test` except a tiny smoke test.
"""
