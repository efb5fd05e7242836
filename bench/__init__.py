"""recsys benchmarks: each ``bench_*.py`` module has ``run() -> list[Result]``.

Every figure is reported against a baseline measured in the same run, as a ratio.
"""
