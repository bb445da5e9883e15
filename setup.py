"""Build script for the fastwait C extension.

Environment switches:
  FASTWAIT_DEBUG=1     -O0 -g3 with assertions enabled (-UNDEBUG)
  FASTWAIT_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer build
                       (run with PYTHONMALLOC=malloc and libasan preloaded;
                       see scripts/asan.sh)
Warnings are always errors.
"""
import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

#: Start-up files installed at the top of site-packages: FASTWAIT_INSTALL=1
#: in the environment runs fastwait.install() when Python starts (the .pth's
#: import line up to 3.14; 3.15's PEP 829 .start entry point, which also
#: silences the .pth's import line there).
STARTUP_FILES = ("python/fastwait-install.pth", "python/fastwait-install.start")


class build_py_with_startup_files(build_py):
    """build_py that also puts the start-up files at the top of the build
    (so that they land in site-packages itself, where site reads them)."""

    def run(self):
        super().run()
        for path in STARTUP_FILES:
            self.copy_file(path, os.path.join(self.build_lib, os.path.basename(path)))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [
            os.path.join(self.build_lib, os.path.basename(p)) for p in STARTUP_FILES
        ]

extra_compile_args = [
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
    "-Wno-cast-function-type",
    "-Werror",
]
extra_link_args = []

if os.environ.get("FASTWAIT_DEBUG") == "1":
    extra_compile_args += ["-O0", "-g3", "-UNDEBUG"]

if os.environ.get("FASTWAIT_SANITIZE") == "1":
    flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
             "-fno-sanitize-recover=undefined", "-O1", "-g", "-UNDEBUG"]
    extra_compile_args += flags
    extra_link_args += ["-fsanitize=address,undefined"]

if sys.implementation.name != "cpython" or os.environ.get("FASTWAIT_NO_EXTENSIONS") == "1":
    ext_modules = []
else:
    ext_modules = [
        Extension(
            "fastwait._fastwait",
            sources=sorted(glob.glob("src/_fastwait/*.c")),
            depends=sorted(glob.glob("src/_fastwait/*.h")),
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ]

setup(ext_modules=ext_modules, cmdclass={"build_py": build_py_with_startup_files})
