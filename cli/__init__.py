"""The recsys command line: thin Typer commands over ``recommender_core``."""
