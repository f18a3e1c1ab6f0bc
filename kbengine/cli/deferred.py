"""Modules the command line loads on first use rather than at start-up.

scikit-learn imports ``scipy.stats`` when it is imported (``sklearn.utils.fixes``), for a few
functions seek never calls: a third of a cold ``kbengine seek`` beyond ``import torch``
(``benchmarks/cold_start.py``). ``defer`` puts a stand-in in ``sys.modules`` that imports the real
module the first time any of its attributes is read, then serves them; code that uses the module
sees no difference. ``importlib.util.LazyLoader`` cannot do this on Python 3.11: the import
system reads ``__spec__`` on every import of an already-loaded module, which loads it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

DEFERRED = ("scipy.stats",)
STAND_INS = {"scipy.stats": frozenset({"rankdata", "gmean", "spearmanr", "chi2"})}
"""Names other modules import from a deferred module at their own import time (``from scipy.stats
import rankdata`` in sklearn.metrics, on the path of ``sklearn.mixture``): each is handed a
``DeferredAttribute`` that forwards calls and attribute reads. All are functions or distribution
objects, never classes. Any other name read before the module is loaded loads it."""


class DeferredAttribute:
    """``module.name`` resolved on first use: calls and attribute reads go to the real object."""

    __slots__ = ("_module", "_name")

    def __init__(self, module: DeferredModule, name: str) -> None:
        self._module = module
        self._name = name

    def resolve(self) -> Any:
        return getattr(self._module.load(), self._name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.resolve(), attribute)

    def __repr__(self) -> str:
        return f"<deferred {self._module.__name__}.{self._name}>"


class DeferredModule(ModuleType):
    """A stand-in for module ``name``: the real module is imported when an attribute is read."""

    def __init__(self, name: str, spec: Any) -> None:
        super().__init__(name)
        # what the import system and ``inspect`` read of every module, so reading it loads nothing
        self.__spec__ = spec
        self.__loader__ = spec.loader
        self.__file__ = spec.origin
        self.__package__ = spec.parent if spec.submodule_search_locations is None else name
        if spec.submodule_search_locations is not None:
            self.__path__ = list(spec.submodule_search_locations)
        self.__dict__["_deferred_lock"] = threading.Lock()

    def __getattr__(self, attribute: str) -> Any:
        if attribute in STAND_INS.get(self.__name__, ()) and sys.modules.get(self.__name__) is self:
            return DeferredAttribute(self, attribute)
        return getattr(self.load(), attribute)

    def load(self) -> ModuleType:
        with self.__dict__["_deferred_lock"]:
            name = self.__name__
            if sys.modules.get(name) is self:
                del sys.modules[name]
                try:
                    real = importlib.import_module(name)
                except BaseException:
                    sys.modules.setdefault(name, self)
                    raise
            else:
                real = sys.modules[name]
            if real is not self:
                self.__dict__.update({k: v for k, v in vars(real).items() if k != "_deferred_lock"})
            return real


def defer(names: tuple[str, ...] = DEFERRED) -> None:
    """Defer each module of ``names`` that is not imported yet (and exists). Its spec is found
    without importing its parent package (``importlib.util.find_spec`` would: scipy's ``__init__``
    alone is a tenth of a second of ``kbengine --help``)."""
    for name in names:
        if name in sys.modules:
            continue
        spec = find_spec_quietly(name)
        if spec is not None:
            sys.modules[name] = DeferredModule(name, spec)


def find_spec_quietly(name: str) -> Any:
    """The spec of module ``name``, importing no package on its way (None when it does not exist)."""
    parent, _, _ = name.rpartition(".")
    if not parent:
        return importlib.util.find_spec(name)
    if parent in sys.modules:
        return importlib.util.find_spec(name)
    outer = find_spec_quietly(parent)
    if outer is None or outer.submodule_search_locations is None:
        return None
    return importlib.machinery.PathFinder.find_spec(name, list(outer.submodule_search_locations))
