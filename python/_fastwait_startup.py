"""fastwait's start-up hook: FASTWAIT_INSTALL=1 installs fastwait at start-up.

``fastwait-install.pth`` (Python 3.11-3.14) and ``fastwait-install.start``
(3.15+, PEP 829) in site-packages call :func:`hook` when any Python process
of the environment starts.  Unless ``FASTWAIT_INSTALL`` is set (and not
``0``), it does nothing and imports nothing: fastwait, and asyncio, are
imported only when asked for.

PYTEST_DONT_REWRITE: imported at start-up, before pytest could rewrite it
(pytest marks every module of a distribution that has a pytest plugin).
"""

import os


def hook():
    """Run ``fastwait.install()`` if FASTWAIT_INSTALL is set and not 0."""
    if os.environ.get("FASTWAIT_INSTALL", "") in ("", "0"):
        return
    import fastwait

    fastwait.install()
