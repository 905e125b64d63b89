"""What a failed ffmpeg run is reported as: its own last error line, or the signal that stopped it."""

import signal

from vidgen.io.ffmpeg import failure


def test_a_failure_is_ffmpegs_last_line_without_its_context_prefix():
    stderr = b"some warning\n[out#0/mp4 @ 0x5650e0638700] Error closing file: No space left on device\n"
    assert failure(1, stderr) == "Error closing file: No space left on device"
    assert failure(1, b"") == "ffmpeg exited with status 1"


def test_a_file_size_limit_is_named_as_such():
    assert "size limit" in failure(-signal.SIGXFSZ, b"")
    assert failure(-signal.SIGKILL, b"") == "ffmpeg was stopped by SIGKILL"
