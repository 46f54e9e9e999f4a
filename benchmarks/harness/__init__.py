"""Side-by-side S3 benchmark: Silver Lining against moto, LocalStack and nginx (see run.py)."""
