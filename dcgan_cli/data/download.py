"""``--download``: fetch a dataset from its publisher with torchvision's downloaders.

Each fetcher skips what is already there and turns every network or archive failure into
one DcganError line naming the URL. Nothing downloaded is ever unpickled (CIFAR-10's
batches go through arrays.py's restricted reader).
"""

from __future__ import annotations

import socket
import tarfile
import urllib.error
import zipfile
from pathlib import Path

from dcgan_cli.core.console import note
from dcgan_cli.core.errors import DcganError

# Where each publisher serves its files (module attributes, so a test can point them elsewhere).
MNIST_MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"]
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
LSUN_URL = "http://dl.yf.io/lsun/scenes"
TIMEOUT_S = 60  # a stalled connection fails instead of hanging forever


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip().splitlines()
    return text[0] if text else type(exc).__name__


def fetch(
    url: str, folder: Path, what: str, *, md5: str | None = None, extract: bool = True, remove_archive: bool = False
) -> None:
    """Download ``url`` into ``folder`` (and unpack it); one clear line if anything fails."""
    from torchvision.datasets.utils import download_and_extract_archive, download_url

    filename = url.rsplit("/", 1)[-1]
    target = folder / filename
    existed = target.exists()
    note(f"Downloading {what} from {url} into {folder}")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(TIMEOUT_S)
    try:
        if extract:
            download_and_extract_archive(url, str(folder), filename=filename, md5=md5, remove_finished=remove_archive)
        else:
            download_url(url, str(folder), filename=filename, md5=md5)
    except (urllib.error.URLError, OSError, RuntimeError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        if not existed:
            target.unlink(missing_ok=True)  # a partial download must not pass for the real file next time
        raise DcganError(
            f"could not download {what} from {url} ({_reason(exc)}); check the network connection, "
            "or download it yourself and pass --data the folder holding it"
        ) from None
    finally:
        socket.setdefaulttimeout(previous_timeout)


def download_mnist(root: Path) -> None:
    """The four MNIST IDX files (gzipped, checked by MD5) into ``root``, from the first mirror that answers."""
    from torchvision.datasets import MNIST

    from dcgan_cli.data.arrays import find_idx

    for filename, md5 in MNIST.resources:
        if find_idx(root, filename.removesuffix(".gz")) is not None:
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                fetch(mirror + filename, root, f"MNIST {filename}", md5=md5, extract=False)
                break
            except DcganError as exc:
                errors.append(str(exc))
        else:
            raise DcganError(errors[-1])


def download_cifar10(root: Path) -> None:
    """cifar-10-python.tar.gz (MD5-checked), unpacked to ``root``/cifar-10-batches-py."""
    if (root / "cifar-10-batches-py" / "data_batch_1").is_file():
        return
    fetch(CIFAR10_URL, root, "CIFAR-10", md5=CIFAR10_MD5, remove_archive=True)


def download_celeba(root: Path) -> None:
    """CelebA's aligned images and annotation files from the authors' Google Drive (needs gdown)."""
    from torchvision.datasets import CelebA
    from torchvision.datasets.utils import (
        download_file_from_google_drive,
        extract_archive,
    )

    if (root / "img_align_celeba").is_dir() and (root / "list_attr_celeba.txt").is_file():
        return
    note(f"Downloading CelebA (1.4 GB) from its authors' Google Drive into {root}")
    try:
        for file_id, md5, filename in CelebA.file_list:
            download_file_from_google_drive(file_id, str(root), filename, md5)
        extract_archive(str(root / "img_align_celeba.zip"))
    except (urllib.error.URLError, OSError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise DcganError(
            f"could not download CelebA from Google Drive ({_reason(exc)}); Google often limits it: get "
            "img_align_celeba.zip and list_attr_celeba.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
            "and pass --data the folder holding them"
        ) from None


def download_lsun(root: Path, category: str | None) -> None:
    """One LSUN scene database (``--category``) from LSUN's server, unzipped into ``root``."""
    from dcgan_cli.data.lsun import LSUN_SCENES, database_name

    if not category:
        raise DcganError(
            f"--download for lsun needs --category, one of: {', '.join(LSUN_SCENES)} (bedroom in the paper)"
        )
    name = database_name(category)
    scene = name.removesuffix("_lmdb").rsplit("_", 1)[0]
    if name != "test_lmdb" and scene not in LSUN_SCENES:
        raise DcganError(f"LSUN has no scene {scene!r}; pick --category from: {', '.join(LSUN_SCENES)}")
    if (root / name / "data.mdb").is_file():
        return
    fetch(f"{LSUN_URL}/{name}.zip", root, f"LSUN {name} (bedroom alone is 43 GB)", remove_archive=True)
