"""Build script for the native part of exectrace.

Everything declarative lives in pyproject.toml; this file only describes the
Cython extension ``exectrace._tracecore``: src/_tracecore.pyx, which includes
the parts in src/core/ (recorder binding, writer, reader: one extension, one C
file), over the C hot path in src/native/ (each header with the .pxd that
declares it to Cython).
"""

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

AUTOSTART_PTH = "exectrace-autostart.pth"


class build_py_with_pth(build_py):
    """Also puts the autostart .pth file at the root of the wheel, which pip
    installs into site-packages (where .pth files are read)."""

    def run(self):
        super().run()
        self.copy_file(os.path.join("src", AUTOSTART_PTH), os.path.join(self.build_lib, AUTOSTART_PTH),
                       preserve_mode=0)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, AUTOSTART_PTH)]

extra_compile_args = []
if sys.platform != "win32":
    extra_compile_args += ["-O3", "-fno-strict-aliasing", "-Wno-unused-function"]
if os.environ.get("EXECTRACE_DEBUG_BUILD"):
    extra_compile_args += ["-O0", "-g", "-UNDEBUG"]

extension = Extension(
    "exectrace._tracecore",
    sources=["src/_tracecore.pyx"],
    include_dirs=["src/native"],
    depends=[os.path.join(directory, name) for directory in ("src/native", "src/core")
             for name in sorted(os.listdir(directory))],
    libraries=["z"],
    extra_compile_args=extra_compile_args,
)

# per-slice aggregation for the analysis commands (src/exectrace/_summarize.pyx)
summarize_extension = Extension(
    "exectrace._summarize",
    sources=["src/exectrace/_summarize.pyx"],
    extra_compile_args=extra_compile_args,
)

# the reader's decoder with its per-event path in C (src/exectrace/_decode.pyx)
decode_extension = Extension(
    "exectrace._decode",
    sources=["src/exectrace/_decode.pyx"],
    include_dirs=["src/native"],
    depends=["src/native/pbwire.h", "src/native/pbwire.pxd", "src/native/perfetto_schema.h", "src/native/perfetto_schema.pxd"],
    extra_compile_args=extra_compile_args,
)

setup(
    cmdclass={"build_py": build_py_with_pth},
    ext_modules=cythonize(
        [extension, summarize_extension, decode_extension],
        include_path=["src/native"],
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
            "autotestdict": False,
        },
    ),
)
