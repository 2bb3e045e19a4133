"""OPA bundles: the policy set as a ``.tar.gz`` that an OPA sidecar loads.

    ps = load_policy_set(Path("policies"))
    write_bundle(ps, Path("writ-bundle.tar.gz"))
    files = read_bundle(Path("writ-bundle.tar.gz"))     # {".manifest": b"...", "data.json": ..., "writ/authz.rego": ...}

The bundle holds ``/.manifest`` (``revision`` = the policy set's revision, ``roots``),
``/data.json`` (all data files merged, at the root) and every non-test ``.rego`` file
at its path. It is reproducible: the same policy set gives the same bytes (sorted
members, fixed times and owners), so a bundle's digest identifies its policies.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zlib
from pathlib import Path

from writ.engine.core.errors import InputError
from writ.engine.policy.policyset import PolicySet

MAX_BUNDLE_BYTES = 64 * 1024 * 1024
MAX_MEMBERS = 4096  # a policy set is dozens of files; a bundle of more is not one of ours


def bundle_roots(ps: PolicySet) -> list[str]:
    """Top-level names the bundle owns in OPA's data tree: packages' first segment and data keys."""
    roots = {pkg.split(".")[0] for pkg in ps.packages if pkg}
    roots.update(ps.data.keys())
    return sorted(roots)


def bundle_files(ps: PolicySet) -> dict[str, bytes]:
    manifest = {"revision": ps.revision, "roots": bundle_roots(ps)}
    files = {
        ".manifest": json.dumps(manifest, sort_keys=True, indent=2).encode(),
        "data.json": json.dumps(ps.data, sort_keys=True, indent=2).encode(),
    }
    for path, source in sorted(ps.modules.items()):
        files[path] = source.encode()
    return files


def bundle_bytes(ps: PolicySet) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(bundle_files(ps).items()):
            info = tarfile.TarInfo("/" + name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def write_bundle(ps: PolicySet, out: Path) -> int:
    """Write the bundle to ``out``; returns its size in bytes."""
    data = bundle_bytes(ps)
    out.write_bytes(data)
    return len(data)


def read_bundle(path: Path) -> dict[str, bytes]:
    """Members of a bundle, by path without the leading ``/``; InputError if it is not a bundle."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            return _members(tar, str(path))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .tar.gz bundle: {e}") from None


def bundle_members(raw: bytes, what: str = "policy bundle") -> dict[str, bytes]:
    """``read_bundle`` of bytes in memory (e.g. a bundle carried in an attestation bundle), however hostile.

    Unpacked in memory up to ``MAX_BUNDLE_BYTES`` before tar reads a byte: a gzip bomb, or a tar
    header (PAX) declaring gigabytes, is refused instead of read.
    """
    try:
        unzip = zlib.decompressobj(wbits=31)  # gzip, one member
        plain = unzip.decompress(raw, MAX_BUNDLE_BYTES + 1)
        if len(plain) > MAX_BUNDLE_BYTES:
            raise InputError(f"{what}: bundle is larger than {MAX_BUNDLE_BYTES} bytes unpacked")
        if not unzip.eof or unzip.unused_data:
            raise InputError(f"{what}: not one complete gzip stream")
        with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
            return _members(tar, what)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise InputError(f"{what}: not a readable .tar.gz bundle: {e}") from None


def _members(tar: tarfile.TarFile, what: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    total = 0
    for count, member in enumerate(tar, 1):
        if count > MAX_MEMBERS:
            raise InputError(f"{what}: bundle has more than {MAX_MEMBERS} members")
        if not member.isfile():
            continue
        total += member.size
        if total > MAX_BUNDLE_BYTES:
            raise InputError(f"{what}: bundle is larger than {MAX_BUNDLE_BYTES} bytes unpacked")
        f = tar.extractfile(member)
        if f is not None:
            out[member.name.lstrip("/")] = f.read()
    return out
