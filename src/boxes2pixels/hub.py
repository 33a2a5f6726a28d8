"""Hugging Face Hub addresses and downloads, the way ``huggingface_hub`` reads them.

``hf://[<type>s/]<owner>/<repo>[@<revision>][/<path>]`` (the grammar of ``huggingface_hub``'s
``parse_hf_uri`` and ``HfFileSystem``): the repository type prefix is plural (``datasets/``,
``spaces/``, ``models/``; none means a model), the revision follows the repository id and may
hold slashes (``@refs/pr/1``, ``@refs/convert/parquet``, or any branch written with ``%2F``),
and an ``@`` inside the path is part of a file name. Parsing needs no network and works with
every supported ``huggingface_hub`` version (``parse_hf_uri`` itself only exists in new ones).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from .errors import CheckpointError, ConfigError

HF_PROTOCOL = "hf://"
_TYPE_PREFIXES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_SPECIAL_REF = re.compile(r"^refs/(?:convert/[\w.-]+|pr/\d+)")
_REPO_PART = re.compile(r"^[A-Za-z0-9][\w.-]*$")


@dataclass(frozen=True)
class HubPath:
    """A parsed ``hf://`` address.

    Attributes:
        repo_type: ``model``, ``dataset`` or ``space``.
        repo_id: ``owner/name``.
        revision: branch, tag, commit or ``refs/pr/N``; ``None`` for the default branch.
        path_in_repo: the file (or folder) inside the repository; ``""`` for the root.
    """

    repo_type: str
    repo_id: str
    revision: str | None = None
    path_in_repo: str = ""

    def __str__(self) -> str:
        prefix = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        revision = self.revision or ""
        if "/" in revision and not _SPECIAL_REF.fullmatch(revision):
            revision = revision.replace("/", "%2F")
        revision = f"@{revision}" if revision else ""
        path = f"/{self.path_in_repo}" if self.path_in_repo else ""
        return f"{HF_PROTOCOL}{prefix}{self.repo_id}{revision}{path}"


def _bad(spec: str, why: str) -> ConfigError:
    return ConfigError(
        f"'{spec}' is not a Hub address ({why}); write "
        "hf://[datasets/|spaces/]owner/repo[@revision][/path/in/repo], e.g. "
        "hf://owner/repo@v1.0/weights/model.pth or hf://owner/repo@refs/pr/1/model.pth"
    )


def parse_hf_uri(spec: str) -> HubPath:
    """Parse ``hf://[<type>s/]owner/repo[@revision][/path]`` like ``huggingface_hub`` does.

    Raises:
        ConfigError: not an ``hf://`` address, a singular type prefix, or a malformed
            repository id or revision (the message names the address and the form).
    """
    if not spec.startswith(HF_PROTOCOL):
        raise _bad(spec, f"it does not start with {HF_PROTOCOL}")
    location = spec[len(HF_PROTOCOL) :].strip("/")
    repo_type = "model"
    first, _, rest = location.partition("/")
    if first in _TYPE_PREFIXES and rest:
        repo_type, location = _TYPE_PREFIXES[first], rest
    elif first in ("model", "dataset", "space") and rest.count("/") >= 1:
        raise _bad(spec, f"the type prefix is plural: '{first}s/'")
    at = location.find("@")
    if at == -1 or location[:at].count("/") > 1:  # no revision; an '@' in the path is literal
        parts = location.split("/", 2)
        if len(parts) < 2:
            raise _bad(spec, "the repository id must be owner/name")
        repo_id, revision, path = f"{parts[0]}/{parts[1]}", None, "/".join(parts[2:])
    else:
        repo_id, rev_and_path = location[:at], location[at + 1 :]
        special = _SPECIAL_REF.match(rev_and_path)
        if special:
            revision = special.group()
            path = rev_and_path[len(revision) :].removeprefix("/")
        else:
            raw, _, path = rev_and_path.partition("/")
            revision = unquote(raw)
        if not revision:
            raise _bad(spec, "the revision after '@' is empty")
    owner, _, name = repo_id.partition("/")
    if not (_REPO_PART.match(owner) and _REPO_PART.match(name)):
        raise _bad(spec, f"'{repo_id}' is not a repository id owner/name")
    if path.startswith("/") or "//" in path:
        raise _bad(spec, "the path has an empty segment")
    return HubPath(repo_type, repo_id, revision, path)


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set (works with every ``huggingface_hub`` version;
    ``huggingface_hub.is_offline_mode`` only exists in new ones)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def describe_location(repo_id: str, filename: str, revision: str | None, repo_type: str) -> str:
    """``file 'x' of model repository 'o/r' at revision 'v1'`` for error messages."""
    return (
        f"file '{filename}' of {repo_type} repository '{repo_id}' "
        f"at revision '{revision or 'main (default)'}'"
    )


def hub_download(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    repo_type: str = "model",
    **kwargs: Any,
) -> Path:
    """``huggingface_hub.hf_hub_download`` with one clear error (cached; honours offline mode).

    Raises:
        CheckpointError: the file cannot be had; the message names the repository, the
            revision and the file, and says whether offline mode is set.
    """
    from huggingface_hub import hf_hub_download

    try:
        local = hf_hub_download(
            repo_id=repo_id, filename=filename, revision=revision, repo_type=repo_type, **kwargs
        )
    except Exception as exc:  # network, auth, missing repo/revision/file, offline mode
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        where = describe_location(repo_id, filename, revision, repo_type)
        offline = (
            " HF_HUB_OFFLINE is set and the file is not in the local Hugging Face cache "
            "(HF_HOME / HF_HUB_CACHE)."
            if hub_offline()
            else ""
        )
        hint = ""
        if "@" in filename:
            head, _, rev = filename.rpartition("@")
            hint = (
                f" If '@{rev}' is meant as a revision, it goes after the repository id: "
                f"hf://{repo_id}@{rev}/{head}."
            )
        raise CheckpointError(
            f"cannot get the {where} from the Hugging Face Hub "
            f"({type(exc).__name__}: {first[:200]}).{offline}{hint}"
        ) from exc
    return Path(local)


def download_hf_uri(spec: str, **kwargs: Any) -> Path:
    """Download the file an ``hf://`` address names (see :func:`parse_hf_uri`).

    Raises:
        ConfigError: a malformed address, or one that names no file.
        CheckpointError: the file cannot be had (repository, revision and file named).
    """
    hub_path = parse_hf_uri(spec)
    if not hub_path.path_in_repo:
        raise _bad(spec, "it names a repository, not a file in it")
    return hub_download(
        hub_path.repo_id,
        hub_path.path_in_repo,
        revision=hub_path.revision,
        repo_type=hub_path.repo_type,
        **kwargs,
    )
