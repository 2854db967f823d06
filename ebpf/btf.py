"""Struct member offsets of the running kernel, read from its BTF (/sys/kernel/btf/vmlinux).

bcc compiles against the kernel headers found under /lib/modules/$(uname -r)/build, and
those are often not the running kernel's own (a distribution's headers linked for a newer
or custom kernel). Tracepoint arguments are safe (bcc takes their layout from tracefs), but
``sk->field`` compiled from mismatched headers reads the wrong bytes. A probe that follows
kernel pointers therefore takes the offsets from the kernel itself and passes them to its
program as -D macros. Only what is needed is parsed: names, structs/unions, and the
modifiers and typedefs between an anonymous member and its struct.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")

_STRUCT, _UNION, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG = 4, 5, 8, 9, 10, 11, 18
# Bytes after the 12-byte common header, per kind: fixed, or per vlen entry.
_FIXED = {1: 4, 3: 12, 14: 4, 17: 4}
_PER_ENTRY = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
_MODIFIERS = {_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG}


class BtfError(Exception):
    """The kernel has no BTF, or it lacks a struct or member a probe needs."""


@dataclass(frozen=True, slots=True)
class _Type:
    kind: int
    name: str
    info: int
    ref: int  # size for structs, the referenced type id for modifiers
    members_at: int  # offset of the first member record in the BTF blob


class Btf:
    """The types of one BTF blob, enough to answer member_offset()."""

    def __init__(self, blob: bytes) -> None:
        magic, _, _, hdr_len, type_off, type_len, str_off, _ = struct.unpack_from(
            "<HBBIIIII", blob, 0
        )
        if magic != 0xEB9F:
            raise BtfError("not a BTF blob (bad magic)")
        self._blob = blob
        self._strings = hdr_len + str_off
        self.types: list[_Type | None] = [None]  # type id 0 is void
        self.structs: dict[str, int] = {}
        self._parse(hdr_len + type_off, hdr_len + type_off + type_len)

    def _name(self, offset: int) -> str:
        start = self._strings + offset
        return self._blob[start : self._blob.index(b"\0", start)].decode()

    def _parse(self, pos: int, end: int) -> None:
        while pos < end:
            name_off, info, ref = struct.unpack_from("<III", self._blob, pos)
            kind, vlen = info >> 24 & 0x1F, info & 0xFFFF
            pos += 12
            name = self._name(name_off) if name_off and kind in (_STRUCT, _UNION) else ""
            self.types.append(_Type(kind, name, info, ref, pos))
            if name and vlen and kind == _STRUCT:
                self.structs.setdefault(name, len(self.types) - 1)
            pos += _FIXED.get(kind, 0) + _PER_ENTRY.get(kind, 0) * vlen

    def _resolve(self, type_id: int) -> _Type | None:
        found = self.types[type_id]
        while found is not None and found.kind in _MODIFIERS:
            found = self.types[found.ref]
        return found

    def _find(self, container: _Type, member: str) -> int | None:
        """Byte offset of ``member`` in a struct/union, looking into anonymous members."""
        bitfield_offsets = container.info >> 31
        for i in range(container.info & 0xFFFF):
            name_off, type_id, offset = struct.unpack_from(
                "<III", self._blob, container.members_at + 12 * i
            )
            bits = offset & 0xFFFFFF if bitfield_offsets else offset
            if name_off and self._name(name_off) == member:
                return bits // 8
            inner = self._resolve(type_id) if not name_off else None
            if inner is not None and inner.kind in (_STRUCT, _UNION):
                found = self._find(inner, member)
                if found is not None:
                    return bits // 8 + found
        return None

    def member_offset(self, struct_name: str, member: str) -> int:
        """offsetof(struct struct_name, member) in this kernel."""
        type_id = self.structs.get(struct_name)
        if type_id is None:
            raise BtfError(f"the kernel's BTF has no struct {struct_name}")
        found = self._find(self.types[type_id], member)  # type: ignore[arg-type]
        if found is None:
            raise BtfError(f"struct {struct_name} has no member {member} in this kernel")
        return found


@cache
def kernel_btf() -> Btf:
    """The running kernel's BTF (parsed once per process, ~0.1 s)."""
    try:
        return Btf(VMLINUX.read_bytes())
    except OSError as exc:
        raise BtfError(f"cannot read {VMLINUX}: {exc.strerror} (kernel without BTF?)") from exc


def offsets_cflags(wanted: dict[str, tuple[str, str]]) -> list[str]:
    """``-DNAME=offset`` for every NAME: (struct, member) in ``wanted``."""
    btf = kernel_btf()
    return [f"-D{macro}={btf.member_offset(s, m)}" for macro, (s, m) in wanted.items()]
