"""Build hook for the one C extension (multi-lane MD5 with SHA-256 alongside); everything else
is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and the node
hashes MD5 with hashlib, one upload per thread (slower for concurrent large uploads, same
results). ``silverlining serve`` says at start how it hashes uploads.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "silverlining._native._md5lanes",
            ["src/silverlining/_native/_md5lanes.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
