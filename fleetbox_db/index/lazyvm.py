"""VMs whose fields are made when one is first read: what vms() returns.

A first vms() of 10,000 members spent as long making records and VM objects as scanning the
tree, yet callers mostly read a few members, or a few fields of each. A LazyVM holds only
where its record is until any attribute is read; then it becomes the VM that record makes.

It is a VM in every way callers can see: isinstance, ==, repr, copy, deepcopy, pickle (a
plain VM is pickled), dataclasses.fields/asdict/replace. Each field is a non-data
descriptor on the class, and Python looks in the instance dict before one: the first read
fills the dict, after which the descriptors are never consulted again. A field assigned
before that first read keeps the value assigned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any, Final

from fleetbox_db.records import VM, same_vm

__all__ = ["LazyVM", "Source", "lazy_vms"]


#: What makes a LazyVM's VM, anew, from its key (a record, or where one is).
Source = Callable[[Any], VM]


class LazyVM(VM):
    __doc__ = VM.__doc__  # help() and repr() read as a VM's, as it is one
    __slots__ = ("_key", "_source")  # both deleted once filled
    __qualname__ = "VM"
    _source: Source
    _key: Any

    def _fill(self) -> None:
        if not hasattr(self, "_source"):
            return  # filled, or made whole (dataclasses.replace calls __init__)
        with _filling:  # two threads' first reads make one dict, the one both then change
            try:
                source = self._source
            except AttributeError:
                return
            made = _dict.__get__(source(self._key))
            own = _dict.__get__(self)
            if own:  # fields assigned before the first read win
                for key, value in made.items():
                    own.setdefault(key, value)
            else:
                _dict.__set__(self, made)  # the made VM is thrown away
            _unset(self, "_source")
            _unset(self, "_key")

    @property
    def __dict__(self) -> dict[str, Any]:  # vars(vm) shows the fields too
        self._fill()
        return _dict.__get__(self)  # type: ignore[no-any-return]

    @__dict__.setter
    def __dict__(self, fields: dict[str, Any]) -> None:  # a whole new VM: nothing to fill
        self._fill()
        _dict.__set__(self, fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not LazyVM and other.__class__ is not VM:
            return NotImplemented
        assert isinstance(other, VM)
        return same_vm(self, other)

    __hash__ = None  # type: ignore[assignment]  # mutable, as VM

    def __delattr__(self, name: str) -> None:
        self._fill()
        super().__delattr__(name)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        """Copied and pickled as the plain VM it reads as (pickle needs no source)."""
        self._fill()
        return object.__new__, (VM,), dict(_dict.__get__(self))


_unset: Final = object.__delattr__  # not LazyVM's, which fills first
_dict: Final[Any] = VM.__dict__["__dict__"]  # the instance dict itself, not LazyVM.__dict__
_filling: Final = threading.Lock()


class _Field:
    """One VM field of a LazyVM not yet filled."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, vm: LazyVM | None, owner: type | None = None) -> Any:
        if vm is None:
            return getattr(VM, self.name)  # the class default, or AttributeError as VM's
        vm._fill()
        try:
            return _dict.__get__(vm)[self.name]
        except KeyError:  # deleted after the fill: what a VM then shows
            return getattr(VM, self.name)


for _f in fields(VM):
    setattr(LazyVM, _f.name, _Field(_f.name))


def lazy_vms(source: Source, keys: Iterable[Any]) -> list[VM]:
    """A LazyVM per key, made by *source* when first read."""
    out: list[VM] = []
    add = out.append
    new = object.__new__
    for key in keys:
        vm = new(LazyVM)
        vm._source = source
        vm._key = key
        add(vm)
    return out
