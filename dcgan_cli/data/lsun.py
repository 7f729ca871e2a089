"""LSUN scenes from the LMDB databases LSUN distributes (``bedroom_train_lmdb`` and the like).

Each record maps a key to an encoded WebP (or JPEG) image. The database is memory-mapped
read-only and never loaded: only the list of keys is kept, as a fixed-width NumPy array
that is cached in our own cache folder (never next to the user's data) and memory-mapped
from there, so the next run skips the scan and DataLoader workers share it.

py-lmdb refuses to open one database twice in a process, and a forked DataLoader worker
inherits that record, so each process keeps one environment per database (shared_env): a
forked worker reads through the one it inherited (read-only and lock-free, it holds no
per-process state), a spawned worker opens its own. Each process and thread reads through
one long-lived transaction (reader).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from dcgan_cli.core.errors import DcganError
from dcgan_cli.data.image_files import ImageItems, UnreadableImage, decode_image

LSUN_TOOLS = "https://github.com/fyu/lsun"
LSUN_SCENES = (
    "bedroom",
    "bridge",
    "church_outdoor",
    "classroom",
    "conference_room",
    "dining_room",
    "kitchen",
    "living_room",
    "restaurant",
    "tower",
)
CACHE_ENV = "DCGAN_CACHE_DIR"
LIST_PROGRESS_FROM = 100_000  # keys; smaller databases are listed in well under a second


def where_to_get(category: str | None = None) -> str:
    c = (category or "bedroom").removesuffix("_lmdb").removesuffix("_train")
    return (
        f"get it with LSUN's tools from {LSUN_TOOLS} (python3 download.py -c {c}, then unzip {c}_train_lmdb.zip) "
        f"and pass --data path/to/{c}_train_lmdb, or add --download --category {c}"
    )


def database_name(category: str) -> str:
    """The folder LSUN's zip unpacks to: bedroom -> bedroom_train_lmdb, bedroom_val -> bedroom_val_lmdb."""
    name = category.removesuffix("_lmdb")
    if name != "test" and not name.endswith(("_train", "_val")):
        name += "_train"
    return name + "_lmdb"


def category_of(folder_name: str) -> str:
    """bedroom_train_lmdb -> bedroom, bedroom_val_lmdb -> bedroom_val: what --category takes."""
    return folder_name.removesuffix("_lmdb").removesuffix("_train")


def find_lsun_database(root: Path | None, category: str | None) -> Path:
    """The LMDB folder (holding data.mdb) that --data and --category name."""
    if root is None:
        raise DcganError(f"lsun needs --data, an LSUN LMDB database; {where_to_get(category)}")
    if root.name == "data.mdb" and root.is_file():
        root = root.parent
    if not root.is_dir():
        raise DcganError(f"{root} {'is not a folder' if root.exists() else 'does not exist'}; {where_to_get(category)}")
    if (root / "data.mdb").is_file():
        if category and root.name not in (category, database_name(category)):
            raise DcganError(
                f"--category {category} does not name the database {root}; drop --category, "
                "or pass --data the folder that holds several databases"
            )
        return root
    databases = sorted(d for d in root.iterdir() if (d / "data.mdb").is_file())
    names = ", ".join(category_of(d.name) for d in databases)
    if category:
        chosen = [d for d in databases if d.name in (category, database_name(category))]
        if chosen:
            return chosen[0]
        if databases:
            raise DcganError(f"no LSUN database for --category {category} in {root}; it holds: {names}")
    elif len(databases) == 1:
        return databases[0]
    elif databases:
        raise DcganError(
            f"{root} holds {len(databases)} LSUN databases ({names}); pick one with --category, "
            f"e.g. --category {category_of(databases[0].name)}"
        )
    archives = sorted(root.glob("*_lmdb.zip"))
    if archives:
        raise DcganError(f"{root} holds {archives[0].name} but not its database; unzip it there and run again")
    raise DcganError(f"no LSUN LMDB database (a folder holding data.mdb) in {root}; {where_to_get(category)}")


def open_lmdb(path: Path):
    """A read-only LMDB environment: no lock file written (the data may be on read-only media),
    no readahead (random access would pull in pages nobody asked for)."""
    import lmdb

    try:
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as exc:
        raise DcganError(
            f"{path} is not a readable LMDB database ({exc}); pass --data the folder holding data.mdb, "
            "e.g. bedroom_train_lmdb"
        ) from None


_environments: dict[str, object] = {}  # path as given -> environment, for this process and its forks
_opened: dict[tuple, object] = {}  # (device, inode) of data.mdb -> environment: one per database


def shared_env(path: Path):
    """This process's environment for the database at ``path`` (opened on first use, kept open)."""
    path = path if path.is_absolute() else path.absolute()
    env = _environments.get(str(path))
    if env is not None:
        return env
    try:
        st = (path / "data.mdb").stat()
    except OSError as exc:
        raise DcganError(f"cannot read {path / 'data.mdb'}: {exc.strerror or exc}") from None
    identity = (st.st_dev, st.st_ino)
    env = _opened.get(identity)
    if env is None:
        env = _opened[identity] = open_lmdb(path)
    _environments[str(path)] = env
    return env


_readers: dict[tuple, object] = {}  # (database, process, thread) -> read transaction


def reader(path: Path):
    """A read-only transaction on the database at ``path``, kept for the life of this process
    and thread. One per item would be simpler, but py-lmdb never frees a transaction begun in
    a forked DataLoader worker on the environment its parent opened (about 250 bytes each,
    memory that grows through an epoch); the database is read-only, so one snapshot serves."""
    key = (str(path), os.getpid(), threading.get_ident())
    txn = _readers.get(key)
    if txn is None:
        txn = _readers[key] = shared_env(path).begin(write=False)
    return txn


def cache_dir() -> Path:
    """dcgan-cli's cache folder: $DCGAN_CACHE_DIR, else $XDG_CACHE_HOME/dcgan-cli, else ~/.cache/dcgan-cli."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dcgan-cli"


def _key_table(n: int, width: int) -> np.ndarray:
    # A subarray field keeps every byte of a key (NumPy's "S" type would drop trailing NULs).
    return np.zeros(n, dtype=[("length", "<u2"), ("key", "u1", (max(width, 1),))])


def list_keys(env, entries: int) -> np.ndarray:
    """Every key in the database, in LMDB's (sorted) order, as a key table."""
    from contextlib import nullcontext

    from dcgan_cli.core.console import progress_task

    chunks: list[list[bytes]] = [[]]
    bar = (
        progress_task("listing LMDB keys", entries, unit="key") if entries >= LIST_PROGRESS_FROM else nullcontext(None)
    )
    with env.begin(write=False) as txn, bar as advance:
        for key in txn.cursor().iternext(keys=True, values=False):
            chunks[-1].append(key)
            if len(chunks[-1]) == 65_536:
                if advance:
                    advance(65_536)
                chunks.append([])
        if advance:
            advance(len(chunks[-1]))
    width = max((len(k) for c in chunks for k in c), default=1)
    table = _key_table(sum(len(c) for c in chunks), width)
    start = 0
    for chunk in chunks:
        end = start + len(chunk)
        table["length"][start:end] = [len(k) for k in chunk]
        padded = b"".join(k.ljust(width, b"\0") for k in chunk)
        table["key"][start:end] = np.frombuffer(padded, dtype=np.uint8).reshape(len(chunk), width)
        start = end
    return table


def cached_keys(env, path: Path) -> np.ndarray:
    """The key table of the database at ``path``, from our cache when it matches the database's
    size, modification time and entry count; listed (and cached when the cache is writable) otherwise."""
    from dcgan_cli.core.files import atomic_output

    entries = env.stat()["entries"]
    st = (path / "data.mdb").stat()
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    state = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:{entries}".encode()).hexdigest()[:16]
    folder = cache_dir() / "lmdb-keys"
    cache = folder / f"{where}-{state}.npy"
    try:
        table = np.load(cache, mmap_mode="r", allow_pickle=False)
        if table.dtype.names == ("length", "key") and len(table) == entries:
            return table
    except (OSError, ValueError):
        pass  # absent, stale or damaged: list the keys again
    table = list_keys(env, entries)
    try:
        with atomic_output(cache) as tmp, open(tmp, "wb") as f:
            np.save(f, table, allow_pickle=False)
        for old in folder.glob(f"{where}-*.npy"):  # earlier states of the same database
            if old != cache:
                old.unlink(missing_ok=True)
        return np.load(cache, mmap_mode="r", allow_pickle=False)
    except (OSError, DcganError):
        return table  # an unwritable cache only costs the scan next time


class LSUNDataset(ImageItems):
    """One LSUN LMDB database, read lazily: items are images (channels, size, size) in [-1, 1]."""

    def __init__(self, path: Path, size: int, channels: int):
        self.database, self.size, self.channels = path, size, channels
        self.keys = cached_keys(shared_env(path), path)

    def __len__(self) -> int:
        return len(self.keys)

    def key(self, index: int) -> bytes:
        record = self.keys[index]
        return bytes(record["key"][: record["length"]])

    def source(self, index: int) -> str:
        return f"{self.database.name} key {self.key(index).decode('ascii', 'backslashreplace')}"

    def read(self, index: int):
        value = reader(self.database).get(self.key(index))
        if value is None:
            raise UnreadableImage("the key is no longer in the database")
        return decode_image(value, self.size, self.channels)
