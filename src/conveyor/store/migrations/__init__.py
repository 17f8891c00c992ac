"""Alembic migrations of the store's schema; `store/migrate.py` applies them at open.

A new schema change is one module in `versions/` (write it by hand or with
`alembic -c src/conveyor/store/migrations/alembic.ini revision --autogenerate -m "..."`),
and `migrate.HEAD_REVISION` set to its revision id: a test holds the two equal.
"""
