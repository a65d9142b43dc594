"""Part 6, beyond one machine: Dask and Celery, chapter 16."""
