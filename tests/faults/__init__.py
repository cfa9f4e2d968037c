"""The differential fault suite: hostile programs run in their own process on
stock asyncio and on ferroloop (see harness.py)."""
