"""The platform core: where the database is, settings, migrations, connections, locks.

Everything else (ingestion, orchestration, the command line) imports this package;
it imports none of them.
"""
