"""A kit for testing swap policies, processes and routers (needs the ``testing`` extra).

Nothing here is imported by ``import swapcore``.
"""

# <testing-imports>

__all__ = [
    # <testing-all>
]
