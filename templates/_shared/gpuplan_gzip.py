"""Deterministic gzip for gpuplan's boot scripts (written by gpuplan; copied verbatim into the
generated project).

The boot script gpuplan_boot.py builds at `pulumi up` carries files as gzip + base64, and the
script is a replace-on-change input of the machine (AWS user data, GCP startup script, the
RunPod/Vast container command). zlib's gzip output depends on who runs `pulumi up`: its header
records the platform (zlib zutil.h OS_CODE: 3 Unix, 10 Windows, 19 macOS), and other
implementations choose other matches (zlib-ng in Fedora 40+ and in CPython's Windows builds).
A laptop after CI would then replace an unchanged machine. This compressor is plain Python:
the same bytes everywhere, read by any gunzip.
"""

from __future__ import annotations

import struct
import zlib

# DEFLATE's length and distance codes (RFC 1951, 3.2.5): base values and extra bits.
_LENGTH_BASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83,
                99, 115, 131, 163, 195, 227, 258)  # fmt: skip
_LENGTH_EXTRA = (0,) * 8 + (1,) * 4 + (2,) * 4 + (3,) * 4 + (4,) * 4 + (5,) * 4 + (0,)
_DIST_BASE = (1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769,
              1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577)  # fmt: skip
_DIST_EXTRA = tuple(max(0, i // 2 - 1) for i in range(30))


def _code_index(bases: tuple[int, ...], value: int) -> int:
    i = len(bases) - 1
    while bases[i] > value:
        i -= 1
    return i


def deflate_bytes(data: bytes) -> bytes:
    """Raw DEFLATE (RFC 1951): one block of fixed Huffman codes, greedy LZ77 matches (32 KiB
    window, the 64 latest candidates). Pure Python, so every machine writes the same bytes:
    zlib's output depends on the implementation (zlib-ng in Fedora 40+ and in CPython's Windows
    builds), and a changed boot script replaces the machine on the next `pulumi up`."""
    out = bytearray()
    acc = nbits = 0

    def put(value: int, n: int) -> None:  # n bits, least significant first
        nonlocal acc, nbits
        acc |= value << nbits
        nbits += n
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8

    def put_code(code: int, n: int) -> None:  # Huffman codes go most significant bit first
        put(int(format(code, f"0{n}b")[::-1], 2), n)

    def put_symbol(symbol: int) -> None:  # the fixed literal/length code (RFC 1951, 3.2.6)
        if symbol < 144:
            put_code(0x30 + symbol, 8)
        elif symbol < 256:
            put_code(0x190 + symbol - 144, 9)
        elif symbol < 280:
            put_code(symbol - 256, 7)
        else:
            put_code(0xC0 + symbol - 280, 8)

    put(1, 1)  # BFINAL: the only block
    put(1, 2)  # BTYPE 01: fixed Huffman codes
    seen: dict[bytes, list[int]] = {}
    i, size = 0, len(data)
    while i < size:
        best_len = best_dist = 0
        limit = min(258, size - i)
        if limit >= 3:
            for j in reversed(seen.get(data[i : i + 3], [])[-64:]):
                if i - j > 32768:
                    break
                n = 3
                while n < limit and data[j + n] == data[i + n]:
                    n += 1
                if n > best_len:
                    best_len, best_dist = n, i - j
                    if n == limit:
                        break
        step = best_len if best_len >= 3 else 1
        if step > 1:
            li = _code_index(_LENGTH_BASE, best_len)
            put_symbol(257 + li)
            put(best_len - _LENGTH_BASE[li], _LENGTH_EXTRA[li])
            di = _code_index(_DIST_BASE, best_dist)
            put_code(di, 5)
            put(best_dist - _DIST_BASE[di], _DIST_EXTRA[di])
        else:
            put_symbol(data[i])
        for k in range(i, min(i + step, size - 2)):
            seen.setdefault(data[k : k + 3], []).append(k)
        i += step
    put_symbol(256)  # end of block
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def gzip_bytes(data: bytes) -> bytes:
    """A gzip member (RFC 1952) of ``data`` that is the same on every machine: mtime 0, OS
    "unknown" (zlib writes its platform there: 3 Unix, 10 Windows, 19 macOS), deflate_bytes."""
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return header + deflate_bytes(data) + trailer
