"""pytest plugin: run a test suite with fastwait installed.

``pytest --fastwait`` (the option comes with the package, through the
``pytest11`` entry point, off by default), ``pytest -p
fastwait.pytest_plugin`` (loading the plugin by name installs too, also with
``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``) or ``FASTWAIT_INSTALL=1`` in the
environment: ``fastwait.install()`` runs before the first conftest.py is
imported, so that the suite, its conftest files and the code under test all
see fastwait's primitives in asyncio.  The report header says whether
fastwait is installed and which primitives are native.  Without the option
the plugin does nothing, and imports neither fastwait nor asyncio.
"""

import os

import pytest

#: The plugin's name: the module's, for ``-p`` and for the entry point alike
#: (so that ``-p fastwait.pytest_plugin`` with autoloading on registers it once).
NAME = __name__


def pytest_addoption(parser):
    group = parser.getgroup("fastwait")
    group.addoption(
        "--fastwait",
        action="store_true",
        default=False,
        help="install fastwait (fastwait.install()) before collection: asyncio's "
             "gather, wait, wait_for, as_completed, shield, TaskGroup and "
             "timeouts become fastwait's native ones",
    )


def _requested(early_config):
    options = early_config.known_args_namespace
    if getattr(options, "fastwait", False):
        return True
    if os.environ.get("FASTWAIT_INSTALL", "") not in ("", "0"):
        return True
    # Loaded by name (-p fastwait.pytest_plugin, or PYTEST_PLUGINS), not only
    # through the entry point.
    named = list(getattr(options, "plugins", None) or [])
    named += os.environ.get("PYTEST_PLUGINS", "").split(",")
    return NAME in (name.strip() for name in named)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    if _requested(early_config):
        import fastwait

        fastwait.install()
        early_config.stash[_INSTALLED] = True


def pytest_report_header(config):
    if not config.stash.get(_INSTALLED, False):
        return None
    import fastwait

    if fastwait.installed():
        from ._install import NAMES

        # What install() put in asyncio's place (CompletionQueue and race
        # have no stdlib counterpart).
        native = ", ".join(sorted(fastwait.NATIVE_NAMES & set(NAMES),
                                  key=lambda name: (name.lower(), name)))
        return f"fastwait {fastwait.__version__}: installed; native: {native}"
    return (f"fastwait {fastwait.__version__}: NOT installed (no C extension: "
            f"NATIVE={fastwait.NATIVE}); asyncio's own primitives are in use")


def pytest_unconfigure(config):
    if config.stash.get(_INSTALLED, False):
        import fastwait

        fastwait.uninstall()
        config.stash[_INSTALLED] = False


_INSTALLED = pytest.StashKey[bool]()
