"""Local models: fetch and verify pinned weights, build llama-server, supervise it per tier.

See ``docs/local-models.md``. The pieces: :mod:`.manifest` (what is pinned), :mod:`.fetch`,
:mod:`.build`, :mod:`.supervisor`, :mod:`.provider` (the ``kind = "local"`` tier),
:mod:`.toolcalls` (tools in the prompt, calls parsed out of the text), :mod:`.cli`.
"""
