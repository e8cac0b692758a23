"""Build configuration beyond pyproject.toml: the one C extension, blocklist._native.

Everything else (metadata, dependencies, packages) is declared in pyproject.toml; setuptools
merges the two. The extension is plain C against the CPython API with no other library, so a
machine that can install upcs needs only a C compiler and the Python headers.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "blocklist._native",
            sources=["blocklist/_native.c"],
            extra_compile_args=["-std=c11", "-Wall", "-Wextra"],
        )
    ]
)
