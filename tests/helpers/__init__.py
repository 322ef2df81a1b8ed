"""Helpers the tests share (not fixtures): a sample report bundle, a small simulated experiment in a
store, the insight layer scored on a demo world. Importable as ``helpers.<module>`` because pytest
puts ``tests/`` (the folder of the root ``conftest.py``) on ``sys.path``.
"""
