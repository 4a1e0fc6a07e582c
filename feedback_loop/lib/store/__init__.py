"""Store: the project's PostgreSQL cluster, engines, migrations and bulk reads/writes."""
