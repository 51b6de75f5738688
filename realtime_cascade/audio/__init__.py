"""Voice: audio in and out of a session (see each module's docstring).

    pcm.py       base64 PCM16 on the wire, int16 arrays inside, resampling
    vad.py       server VAD (sans-I/O: samples in, speech started / stopped out)
    stt.py       speech-to-text: pocketsphinx (embedded, worker processes), OpenAI-compatible
    tts.py       text-to-speech: espeak-ng (embedded, ctypes), OpenAI-compatible
    speech.py    one response's speech track: released phrases → audio, in order; timelines
    session.py   a session's audio input: buffer, VAD, commits, transcription, barge-in
    response.py  the response builder in audio mode (output_modalities ["audio"])
    config.py    [audio] / [profiles.X.audio]: which engines a profile uses
"""
