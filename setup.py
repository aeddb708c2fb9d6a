# cffi has no declarative hook: this file only hands the builder to setuptools.
from setuptools import setup

setup(cffi_modules=["build_ffi.py:ffibuilder"])
