"""Shipped helpers for tests and embedders: fakes, synthetic datasets, DCMTK runners."""
