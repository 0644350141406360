"""The load harness: the system under load (`rig`: a switch and its payee simulators), the
payments to offer (`plan`), the open-loop driver behind `ponte bench soak|step` (`driver`),
and locust users for both transports (`locustfile`, run with `ponte bench locust` or the
`locust` command; docs/load-testing.md).

Importing this package imports nothing from locust or gevent: only `locustfile` and
`bridge` do, and they monkey-patch the process, so nothing else may import them.
"""
