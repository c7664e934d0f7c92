"""Reliability and security: each test tries hard to break one of rtreplay's promises.

``docs/reliability.md`` lists the promises, the test for each, and the figures measured.
"""
