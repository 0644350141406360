"""Benchmarks and load: `ponte bench ...`, pytest-benchmark cases, locust, population model."""
