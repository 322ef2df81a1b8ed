"""Package namespaces whose names are imported on first use (PEP 562).

Each stage's commands live in its package (``insightroi/<stage>/_cli.py``), so the CLI imports
every stage package when it starts. Were a package's ``__init__`` to import its modules (numpy,
Ibis, scipy, scikit-learn), every ``insightroi`` command, ``--help`` included, would pay for all
of them first. Such a package lists where each public name lives and gets its module-level
``__getattr__`` and ``__dir__`` from :func:`lazy_exports`; ``from insightroi.stage import name``
works as before and imports only the module that defines ``name``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, Iterable[str]], *,
                 submodules: bool = False) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` that load its public names on first use.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping of str to iterable of str
        Module (absolute name) -> the names the package re-exports from it.
    submodules : bool
        Also answer any other name with the submodule of that name, imported on first use
        (``insightroi.stats`` after a bare ``import insightroi``, as when ``__init__`` imported it).

    Returns
    -------
    tuple of callables
        ``(__getattr__, __dir__)``: assign them at the package's top level. A name, once loaded,
        is stored in the package, so ``__getattr__`` runs once per name.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif submodules and not name.startswith("__"):
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise  # the submodule exists and an import inside it failed
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
