"""What can go wrong with local models; every message says what is missing and how to fix it.

ModelsError            anything below; the CLI prints it and exits with status 2
├── ToolMissing        pip, cmake or a C++ compiler is not installed
├── DownloadFailed     pip could not download a pinned package (or its hash differs)
├── VerifyFailed       an assembled file's sha256, size or GGUF metadata is not the pinned one
├── BuildFailed        cmake failed; the message ends with the log's tail and its path
├── NotInstalled       a model or llama-server is not in the cache yet
└── ServerFailed       llama-server did not become healthy, or died
"""

from __future__ import annotations


class ModelsError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ToolMissing(ModelsError):
    pass


class DownloadFailed(ModelsError):
    pass


class VerifyFailed(ModelsError):
    pass


class BuildFailed(ModelsError):
    pass


class NotInstalled(ModelsError):
    pass


class ServerFailed(ModelsError):
    pass
