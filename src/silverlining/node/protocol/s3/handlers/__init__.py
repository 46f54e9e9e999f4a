"""S3 operation handlers, one function per AWS operation, named after it."""
