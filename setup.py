"""Build the optional C accelerator of the reply scanner (everything else is pyproject).

`optional=True`: without a compiler the install still succeeds and the proxy uses the
pure-Python scanner (proxy/resp/replies.py), which has the same contract.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("proxy.resp._speedups", ["proxy/resp/_speedups.c"], optional=True),
    ]
)
