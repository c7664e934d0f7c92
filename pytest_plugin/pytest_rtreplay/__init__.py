"""rtreplay's pytest plugin: replay OpenAI Realtime cassettes in tests, record them with ``--realtime-record``.

The hooks and fixtures live in :mod:`pytest_rtreplay.plugin` (the ``pytest11`` entry
point). Importing this package is cheap: rtreplay's servers load when a test first uses
``realtime_mock``. ``docs/pytest.md`` is the manual.
"""

from ._config import RECORD_MODES, RealtimeConfigError, RealtimeSettings
from ._mock import RealtimeMock

__all__ = ["RECORD_MODES", "RealtimeConfigError", "RealtimeMock", "RealtimeSettings"]
