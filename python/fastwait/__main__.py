"""python -m fastwait [-m module | script | -] [args ...]

Runs a Python program with fastwait installed (``fastwait.install()``)
before the program's first import, as ``python -m coverage run`` runs one
under coverage: ``python -m fastwait app.py --port 80`` is ``python app.py
--port 80``, and ``python -m fastwait -m pkg.server`` is ``python -m
pkg.server``, with asyncio's primitives replaced by fastwait's.

``sys.argv``, ``sys.path[0]``, ``__main__``, exit codes and uncaught
exceptions are what ``python`` itself gives the program, and so are the
messages for a missing script or module.  With no target (or ``-``) the
program is read from standard input, or an interactive console starts when
standard input is a terminal.
"""

import os
import sys

USAGE = "usage: python -m fastwait [-m module | script | -] [args ...]"


def _program_name():
    # What python names itself in its own error messages (argv[0]).
    orig = getattr(sys, "orig_argv", None)
    return orig[0] if orig else sys.executable


def _fail(message, code):
    print(f"{_program_name()}: {message}", file=sys.stderr)
    return code


def _fresh_main():
    # The program gets a __main__ module of its own, as under python
    # itself, not this module's namespace.
    import types

    module = types.ModuleType("__main__")
    module.__builtins__ = __builtins__
    module.__loader__ = sys.modules["builtins"].__loader__  # BuiltinImporter
    if sys.version_info < (3, 14):
        module.__annotations__ = {}
    sys.modules["__main__"] = module
    return module


def _run_module(name, args):
    import runpy

    if not name:
        print("Argument expected for the -m option", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    sys.argv[:] = [name, *args]  # runpy puts the module's path in argv[0]
    _fresh_main()
    # What "python -m name" itself calls: its messages ("No module named
    # x", "x is a package and cannot be directly executed"), exit code and
    # __main__.
    runpy._run_module_as_main(name, alter_argv=True)
    return 0


def _run_script(path, args):
    import importlib.util
    import runpy

    try:
        is_dir = os.path.isdir(path)
        if not is_dir:
            with open(path, "rb") as file:
                source = file.read()
    except OSError as exc:
        return _fail(f"can't open file {os.path.abspath(path)!r}: "
                     f"[Errno {exc.errno}] {exc.strerror}", 2)
    sys.argv[:] = [path, *args]
    if not sys.flags.safe_path:
        # python puts the script's directory (symlinks resolved) first.
        where = path if is_dir else os.path.dirname(os.path.realpath(path))
        sys.path[0] = os.path.abspath(where)
    if is_dir or source[:4] == importlib.util.MAGIC_NUMBER or source[:2] == b"PK":
        # A directory or zip file with a __main__ module, or a .pyc file.
        try:
            runpy.run_path(path, run_name="__main__")
        except ImportError as exc:
            if str(exc).startswith("can't find '__main__' module in "):
                # python names the directory or zip file by its full path.
                return _fail("can't find '__main__' module in "
                             f"{os.path.abspath(path)!r}", 1)
            raise
        return 0
    filename = os.path.abspath(path)
    code = compile(source, filename, "exec", dont_inherit=True)
    from importlib.machinery import SourceFileLoader

    main = _fresh_main()
    main.__file__ = filename
    if sys.version_info < (3, 15):
        main.__cached__ = None
    main.__loader__ = SourceFileLoader("__main__", filename)
    exec(code, vars(main))
    return 0


def _run_stdin(args):
    sys.argv[:] = ["-", *args]
    if not sys.flags.safe_path:
        sys.path[0] = ""
    if sys.stdin is not None and sys.stdin.isatty():
        import code

        code.interact(local=vars(_fresh_main()))
        return 0
    code = compile(sys.stdin.buffer.read(), "<stdin>", "exec", dont_inherit=True)
    main = _fresh_main()
    main.__file__ = "<stdin>"
    if sys.version_info < (3, 15):
        main.__cached__ = None
    exec(code, vars(main))
    return 0


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    import fastwait

    fastwait.install()
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if not args or args[0] == "-":
        return _run_stdin(args[1:])
    if args[0] == "-m":
        return _run_module(args[1] if len(args) > 1 else "", args[2:])
    if args[0].startswith("-m") and len(args[0]) > 2:
        return _run_module(args[0][2:], args[1:])
    return _run_script(args[0], args[1:])


if __name__ == "__main__":
    sys.exit(main())
