"""The operator web console: server-rendered pages, live over Server-Sent Events."""
