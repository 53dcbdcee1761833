"""The operator console at `/dashboard`: engines, GPUs, routing windows and a live table of decisions.

`recent.py` is the ring the request path feeds (O(1) per request, no serialisation); `window.py` the rolling
counts; `views.py` turns live objects into JSON; `state.py` the `Console` that builds snapshots; `access.py` who may
look; `routes.py` the HTTP routes; `static/` the page (vanilla JS and CSS, no build step).
"""

from .recent import RecentDecisions, Recorded
from .routes import attach_console
from .state import Console

__all__ = ["Console", "RecentDecisions", "Recorded", "attach_console"]
