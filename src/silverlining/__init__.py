"""Silver Lining: an open-source reference cloud for a federated market."""

__version__ = "0.1.0"
