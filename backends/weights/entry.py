"""What the registry records per checkpoint: its sources (:class:`Source`) and the file (:class:`Checkpoint`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Source:
    """Where a file can be fetched: a hub file, a Google Drive file id, or a plain URL.

    ``member`` names the file inside a ``.tar``/``.zip`` archive at that source (a path, or the
    end of one); ``archive_sha256`` is the archive's own digest where its publisher states one.
    ``origin`` records where the link was found (repository, commit, file, section).
    """

    hub_repo: str = ""
    hub_path: str = ""
    revision: str = "main"
    url: str = ""
    verified: bool = False  # True only where the team has seen the file at this source
    note: str = ""
    gdrive_id: str = ""
    member: str = ""
    archive_sha256: str = ""
    origin: str = ""

    @property
    def kind(self) -> str:
        """``hub``, ``gdrive``, ``url`` or ``none`` (a note only: nothing to download)."""
        if self.hub_repo:
            return "hub"
        if self.gdrive_id:
            return "gdrive"
        if self.url:
            return "url"
        return "none"

    def location(self) -> str:
        """The address alone, without marks: what a person would paste into a browser or a config."""
        if self.hub_repo:
            return f"hf://{self.hub_repo}/{self.hub_path}@{self.revision}"
        if self.gdrive_id:
            where = f"https://drive.google.com/uc?id={self.gdrive_id}"  # what gdown fetches, and a browser too
        elif self.url:
            where = self.url
        else:
            return self.note or "no public mirror"
        return f"{where} [{self.member}]" if self.member else where

    def describe(self) -> str:
        return self.location() + ("" if self.verified else " (unverified)")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file the app may need.

    ``check`` names a ``module:function`` that receives the file's path and raises
    :class:`CheckpointError` unless it has the official structure (the strict loader of that
    network); without it, a generic reader stands in (the file must open, and hold
    ``expect_keys`` at its top level when given).
    """

    key: str
    filename: str
    title: str
    tabs: tuple[str, ...]
    licence: str
    sources: tuple[Source, ...] = ()
    sha256: str | None = None
    size_bytes: int | None = None
    host_supplied: bool = False  # licence-restricted or no public file: the Space host provides it
    standin: str | None = None  # "module:function" returning the official structure with seeded tensors
    how_to_get: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    check: str | None = None
    expect_keys: tuple[str, ...] = ()
    name: str = ""  # what a visitor calls it, where the title's first words do not say it well
    optional: str = ""  # what runs instead when the file is absent (the tab still works without it)
    # A checkpoint that is a folder (a diffusers pipeline): ``filename`` is its index file, ``folder_files``
    # every file fetched, relative to the folder (the index last), ``host_folder`` where the folder lies in
    # the host's own repo ($FACELAB_HUB_REPO).
    folder_files: tuple[str, ...] = ()
    host_folder: str = ""

    def standin_builder(self) -> Callable[[], Any] | None:
        if not self.standin:
            return None
        module_name, _, func = self.standin.partition(":")
        return getattr(importlib.import_module(module_name), func)

    def checker(self) -> Callable[[Path], Any] | None:
        if not self.check:
            return None
        module_name, _, func = self.check.partition(":")
        return getattr(importlib.import_module(module_name), func)

    @property
    def is_folder(self) -> bool:
        """True for a checkpoint fetched as a folder of files (see ``folder_files``)."""
        return bool(self.folder_files)

    def downloadable(self) -> bool:
        return any(s.kind != "none" for s in self.sources)
