"""mrbench: a reproducible benchmark for unsupervised MRI contrast translation."""

from mrbench import methods_alias as _methods_alias

__version__ = "0.1.0"

# the method plugins (the checkout's methods/ folder) import as ``mrbench_methods`` also from a
# plain checkout on PYTHONPATH (mrbench.methods_alias says why)
_methods_alias.install()
