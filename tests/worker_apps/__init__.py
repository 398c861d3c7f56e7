"""Handler modules and helpers for the worker tests (importable as ``worker_apps`` with tests/ on sys.path)."""
