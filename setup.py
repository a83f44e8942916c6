"""Build hook: the wheel carries the TFLite Micro kernel and harness sources (kernels/ at the repository top, outside
the package) as xstream/_kernels, so `xstream kernels` finds them after a non-editable install. Everything else
is configured in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

KERNELS = Path(__file__).resolve().parent / "kernels"
SOURCES = ("README.md", "build.sh", "ring_buffer/*.cc", "ring_buffer/*.h", "harness/*.cc", "harness/*.h",
           "tests/*.cc", "tests/*.txt", "tests/*.py")


class BuildPyWithKernels(build_py):
    def run(self):
        super().run()
        files = sorted({p for pattern in SOURCES for p in KERNELS.glob(pattern)})
        if not any(p.name == "ring_buffer.cc" for p in files):
            raise SystemExit(f"setup.py: no kernel sources in {KERNELS}; build from a checkout or a complete sdist")
        dest = Path(self.build_lib) / "xstream" / "_kernels"
        for src in files:
            target = dest / src.relative_to(KERNELS)
            self.mkpath(str(target.parent))
            self.copy_file(str(src), str(target))


setup(cmdclass={"build_py": BuildPyWithKernels})
