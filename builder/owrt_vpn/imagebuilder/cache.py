"""Verified downloads and the content-addressed cache.

Layout under the cache root (``$OWRT_VPN_CACHE``, else the platform cache dir)::

    archives/<sha256>/<file name>   verified archives, renamed in only after the check
    partial/<sha256>.part(.json)    an interrupted download and what it came from
    trees/<sha256>/<top dir>        pristine extracted ImageBuilders (marker: .owrt-vpn-tree.json)
    work/<id>/                      per-build copies (removed after the build)
    locks/                          flock files: one download/extraction per archive at a time
    manifests/<key>.json            `make manifest` answers an image build confirmed
                                    (owrt_vpn.imagebuilder.manifests)

A file in ``archives/`` is only trusted after its sha256 was checked again;
a tree only with its marker, written after a complete, checked extraction.
Downloads stream to ``partial/`` and resume from there with HTTP Range.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from owrt_vpn.errors import DownloadError, IntegrityError, NotFoundError
from owrt_vpn.fsutil import sha256_file as sha256_file  # re-exported (callers use it from here)

if TYPE_CHECKING:
    import requests

log = logging.getLogger("owrt_vpn.imagebuilder.cache")

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None) while a download runs."""

TREE_MARKER = ".owrt-vpn-tree.json"
CHUNK = 1 << 16
# Status codes worth another try: the server or a proxy is busy or broken for now.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# A hostile or broken mirror must not fill the memory or the disk: the largest
# real index (profiles.json of a big target) is a few MB, an ImageBuilder a
# few hundred MB. Bigger answers are refused while they arrive.
MAX_SMALL_BYTES = 64 << 20
MAX_ARCHIVE_BYTES = 4 << 30


def _too_big(name: str, url: str, cap: int) -> IntegrityError:
    return IntegrityError(
        f"{name}: larger than {cap >> 20} MiB, refused ({url})",
        hint="the mirror serves something else than OpenWrt's files; try another --mirror",
    )


def cache_root() -> Path:
    """The cache root: ``$OWRT_VPN_CACHE`` or the platform's user cache dir."""
    env = os.environ.get("OWRT_VPN_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("owrt-vpn"))


@contextlib.contextmanager
def file_lock(path: Path, shared: bool = False) -> Iterator[None]:
    """Hold an flock on ``path`` (also between threads: each call opens its own file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient failures."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based), exponential."""
        return float(min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))


class _Transient(Exception):
    """A failure worth retrying (network error, 5xx)."""


def is_local(url: str) -> bool:
    """True for ``file://`` URLs and plain paths (a mirror kept in a directory)."""
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> Path:
    """The file system path of a ``file://`` URL or plain path."""
    return Path(unquote(urlparse(url).path)) if url.startswith("file://") else Path(url)


class Transport:
    """Fetches mirror files over HTTP(S) or from a directory, with retries."""

    def __init__(self, retry: RetryPolicy | None = None, timeout: float = 30.0) -> None:
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.max_small = MAX_SMALL_BYTES  # get_bytes
        self.max_archive = MAX_ARCHIVE_BYTES  # download
        self._session: requests.Session | None = None

    @property
    def session(self) -> requests.Session:
        """A lazily created requests session (requests is only imported when used)."""
        if self._session is None:
            import requests

            from owrt_vpn import __version__

            self._session = requests.Session()
            self._session.headers["User-Agent"] = f"owrt-vpn/{__version__}"
        return self._session

    def get_bytes(self, url: str, what: str | None = None) -> bytes:
        """A small file's bytes (indexes, sha256sums, profiles.json)."""
        name = what or url
        if is_local(url):
            try:
                return local_path(url).read_bytes()
            except FileNotFoundError:
                raise NotFoundError(f"{name}: not found ({url})") from None
            except OSError as exc:
                raise DownloadError(f"{name}: cannot read {url}: {exc.strerror}") from None
        data: bytes = self._with_retries(name, lambda: self._get_once(url, name))
        return data

    def _get_once(self, url: str, name: str) -> bytes:
        import requests

        try:
            resp = self.session.get(url, timeout=self.timeout, stream=True)
        except requests.RequestException as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        with resp:
            self._check_status(resp.status_code, url, name)
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > self.max_small:
                raise _too_big(name, url, self.max_small)
            data = bytearray()
            try:
                for chunk in resp.iter_content(CHUNK):
                    data += chunk
                    if len(data) > self.max_small:
                        raise _too_big(name, url, self.max_small)
            except requests.RequestException as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc
            return bytes(data)

    @staticmethod
    def _check_status(status: int, url: str, name: str) -> None:
        if status in TRANSIENT_STATUS:
            raise _Transient(f"HTTP {status}")
        if status == 404:
            raise NotFoundError(
                f"{name}: not found on the mirror (HTTP 404: {url})",
                hint="check the release, target and subtarget, or the --mirror URL",
            )
        if status >= 400:
            raise DownloadError(f"{name}: HTTP {status} from {url}")

    def _with_retries(self, name: str, fn: Callable[[], Any]) -> Any:
        last = ""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return fn()
            except _Transient as exc:
                last = str(exc)
                if attempt == self.retry.attempts:
                    break
                wait = self.retry.delay(attempt)
                log.info("%s: %s; retrying in %.1f s", name, last, wait)
                time.sleep(wait)
        raise DownloadError(
            f"{name}: download failed after {self.retry.attempts} attempts: {last}",
            hint="check the network or the mirror, then run the command again (it resumes)",
        )

    def download(self, url: str, part: Path, name: str, progress: Progress | None = None) -> None:
        """Stream ``url`` into ``part``, resuming what ``part`` already holds."""
        if is_local(url):
            self._copy_local(url, part, name, progress)
            return
        meta_path = part.with_name(part.name + ".json")
        attempt = 0
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                self._download_once(url, part, meta_path, name, progress)
                return
            except _Transient as exc:
                after = part.stat().st_size if part.exists() else 0
                # A transfer that made progress earns its retries back: a
                # flaky link still finishes, a dead one gives up.
                attempt = 1 if after > before else attempt + 1
                if attempt >= self.retry.attempts:
                    resumes = _read_json(meta_path).get("ranges") is not False
                    raise DownloadError(
                        f"{name}: download failed after {attempt} attempts: {exc}",
                        hint="run the command again: the download resumes where it stopped"
                        if resumes
                        else "run the command again (this server ignores Range requests: "
                        "the download starts over)",
                    ) from None
                wait = self.retry.delay(attempt)
                log.info("%s: %s; resuming in %.1f s", name, exc, wait)
                time.sleep(wait)

    def _download_once(
        self, url: str, part: Path, meta_path: Path, name: str, progress: Progress | None
    ) -> None:
        import requests

        offset = part.stat().st_size if part.exists() else 0
        meta = _read_json(meta_path)
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            # Only the same URL's validators mean anything; the bytes of a
            # content-addressed file are the same on every mirror anyway.
            validator = (
                meta.get("etag") or meta.get("last_modified") if meta.get("url") == url else None
            )
            if validator:
                headers["If-Range"] = validator
        try:
            resp = self.session.get(url, headers=headers, stream=True, timeout=self.timeout)
        except requests.RequestException as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        with resp:
            if resp.status_code == 416 and offset:
                # Nothing left to send: the part may already be complete; the
                # sha256 check decides, and a bad part restarts from zero.
                return
            self._check_status(resp.status_code, url, name)
            if resp.status_code == 206 and offset:
                start = _content_range_start(resp.headers.get("Content-Range", ""))
                if start != offset:
                    part.unlink(missing_ok=True)
                    raise _Transient(f"server resumed at byte {start}, not {offset}")
                mode = "ab"
            else:
                offset, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = offset + int(length) if length and length.isdigit() else None
            if total is not None and total > self.max_archive:
                Cache._drop_part(part)
                raise _too_big(name, url, self.max_archive)
            # Whether this server resumes: a 200 to a Range request, or
            # "Accept-Ranges: none", says it does not (the hint must not promise it).
            ranges = None if "Range" not in headers else resp.status_code == 206
            if resp.headers.get("Accept-Ranges", "").lower() == "none":
                ranges = False
            _write_json(
                meta_path,
                {
                    "url": url,
                    "etag": resp.headers.get("ETag"),
                    "last_modified": resp.headers.get("Last-Modified"),
                    "total": total,
                    "ranges": ranges,
                },
            )
            done = offset
            if progress:
                progress(done, total)
            import urllib3

            try:
                with part.open(mode) as fh:
                    # read1: whatever arrived, at most CHUNK bytes; every byte
                    # received is on disk at once, so a killed run resumes
                    # from nearly where it stopped even on a slow link.
                    while chunk := resp.raw.read1(CHUNK):
                        if done + len(chunk) > self.max_archive:
                            break
                        fh.write(chunk)
                        fh.flush()
                        done += len(chunk)
                        if progress:
                            progress(done, total)
                    os.fsync(fh.fileno())
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                raise _Transient(f"connection lost at byte {done}: {type(exc).__name__}") from exc
            if chunk:  # stopped at the cap: more was coming
                Cache._drop_part(part)
                raise _too_big(name, url, self.max_archive)
            if total is not None and done < total:
                raise _Transient(f"connection closed at byte {done} of {total}")

    @staticmethod
    def _copy_local(url: str, part: Path, name: str, progress: Progress | None) -> None:
        src = local_path(url)
        try:
            total = src.stat().st_size
            with src.open("rb") as fin, part.open("wb") as fout:
                done = 0
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
                fout.flush()
                os.fsync(fout.fileno())
        except FileNotFoundError:
            raise NotFoundError(f"{name}: not found ({src})") from None


def _content_range_start(value: str) -> int | None:
    # "bytes 100-999/1000"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from owrt_vpn.fsutil import write_atomic

    write_atomic(path, json.dumps(data, sort_keys=True), 0o644)


class Cache:
    """The content-addressed cache of verified archives and extracted trees."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()).resolve()

    def archive_path(self, sha256: str, name: str) -> Path:
        """Where the verified archive with this sha256 lives."""
        return self.root / "archives" / sha256 / name

    def part_path(self, sha256: str) -> Path:
        """The partial download of this sha256."""
        return self.root / "partial" / f"{sha256}.part"

    def _lock(self, kind: str, sha256: str) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.root / "locks" / f"{kind}-{sha256}.lock")

    def fetch(
        self,
        url: str,
        sha256: str,
        name: str,
        transport: Transport,
        progress: Progress | None = None,
    ) -> tuple[Path, bool]:
        """The verified archive ``name`` with ``sha256``: (path, downloaded?).

        A cached copy is re-hashed before use; a corrupt one is removed and
        downloaded again. A mismatch after a fresh download is an
        IntegrityError; the cache keeps no unverified file under archives/.
        """
        _check_hex(sha256)
        if "/" in name or name in ("", ".", ".."):
            raise IntegrityError(f"refusing archive name {name!r}")
        final = self.archive_path(sha256, name)
        with self._lock("download", sha256):
            if final.exists():
                if sha256_file(final) == sha256:
                    return final, False
                log.warning("%s: cached copy is corrupt, downloading again", name)
                final.unlink()
            part = self.part_path(sha256)
            part.parent.mkdir(parents=True, exist_ok=True)
            for fresh_retry in (False, True):
                transport.download(url, part, name, progress)
                got = sha256_file(part)
                if got == sha256:
                    break
                self._drop_part(part)
                # One more try from zero: a part resumed across a changed
                # file, or a cut without Content-Length, looks like this too.
                if fresh_retry or is_local(url):
                    raise IntegrityError(
                        f"{name}: sha256 mismatch: the signed sha256sums says {sha256}, "
                        f"the download is {got}",
                        hint="the mirror serves a corrupt or altered file; try another --mirror",
                    )
                log.warning("%s: sha256 mismatch, downloading once more from the start", name)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final)
            self._drop_part(part)
            _fsync_dir(final.parent)
            return final, True

    @staticmethod
    def _drop_part(part: Path) -> None:
        part.unlink(missing_ok=True)
        part.with_name(part.name + ".json").unlink(missing_ok=True)

    def tree(self, archive: Path, sha256: str) -> Path:
        """The pristine extracted tree of ``archive`` (extracted once, under a lock)."""
        from owrt_vpn.imagebuilder.extract import safe_extract

        _check_hex(sha256)
        base = self.root / "trees" / sha256
        with self._lock("tree", sha256):
            top = self._tree_top(base, sha256)
            if top is not None:
                return top
            if base.exists():
                shutil.rmtree(base)  # a half-made tree from an interrupted run
            tmp = self.root / "trees" / f".{sha256}.{uuid.uuid4().hex[:8]}.tmp"
            tmp.mkdir(parents=True)
            try:
                extracted = safe_extract(archive, tmp)
                entries = [p for p in tmp.iterdir()]
                top_name = entries[0].name if len(entries) == 1 and entries[0].is_dir() else "."
                if extracted.skipped_links:
                    log.info(
                        "%s: not created: %d links to absolute paths (host tools; the "
                        "ImageBuilder's prerequisite check makes them for this host)",
                        archive.name,
                        len(extracted.skipped_links),
                    )
                marker = {
                    "sha256": sha256,
                    "top": top_name,
                    "members": extracted.members,
                    "skipped_links": extracted.skipped_links,
                }
                _write_json(tmp / TREE_MARKER, marker)
                os.replace(tmp, base)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            found = self._tree_top(base, sha256)
            assert found is not None
            return found

    @staticmethod
    def _tree_top(base: Path, sha256: str) -> Path | None:
        meta = _read_json(base / TREE_MARKER)
        if meta.get("sha256") != sha256 or not isinstance(meta.get("top"), str):
            return None
        top = (base / meta["top"]).resolve()
        return top if top.is_dir() else None

    def has_tree(self, sha256: str) -> bool:
        """True when the extracted tree for ``sha256`` is complete in the cache."""
        return self._tree_top(self.root / "trees" / sha256, sha256) is not None

    def work_dir(self) -> contextlib.AbstractContextManager[Path]:
        """A fresh 0700 scratch dir for one build (see :func:`workdir.work_dir`)."""
        from owrt_vpn.imagebuilder.workdir import work_dir

        return work_dir(self.root / "work")


def _check_hex(sha256: str) -> None:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise IntegrityError(f"not a sha256 hex digest: {sha256!r}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
