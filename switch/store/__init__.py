"""Persistence adapters: embedded (file/SQLite), PostgreSQL (asyncpg) and Redis."""
