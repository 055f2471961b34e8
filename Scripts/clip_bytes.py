"""CLIP's byte-level BPE alphabet, shared by the fixture generators."""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte → printable-character table, in CLIP's vocabulary order (spec §4.1)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))
