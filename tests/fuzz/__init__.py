"""The fuzz suite: every public loop and transport method called with
arbitrary arguments (hypothesis), in worker processes, on stock asyncio and
on ferroloop; see calls.py, worker.py and test_fuzz.py."""
