"""``python -m swapcore.fakemodel``: the fake model server."""

from swapcore.fakemodel._cli import main

raise SystemExit(main())
