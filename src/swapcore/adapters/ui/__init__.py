"""The gateway's web UI: one static page (``index.html``), served at ``/ui``.

No build step and nothing fetched from elsewhere at run time: the page reads
``/running`` once and then follows ``/api/events``.
"""
