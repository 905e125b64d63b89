"""A Helios stream through `vidgen serve`: watched while it grows, steered as `vidgen stream --live` is,
replayed from its sidecar; deleted while it runs; and an uploaded image animated (image-to-video)."""

import csv as csv_files
import http.client
import io
import json
import shlex
import signal

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import DEADLINE, FAST, wait_for
from test_api import multipart

CHUNK = 33
LONG = str(CHUNK * 500)  # more chunks than any test waits for: each test ends its stream itself


@pytest.fixture(scope="module")
def helios(start_server):
    return start_server(["--model", "tiny-helios", *FAST])


def sidecar(server, video_id: str) -> dict | None:
    path = server.folder / f"{video_id}.mp4.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def test_a_stream_is_watched_while_it_grows_steered_and_replayed(helios, tmp_path, vidgen):
    video = helios.create(prompt="a cat walks", stream=True, frames=LONG, seed=3)
    assert video["stream"] and video["status"] == "queued"
    connection = http.client.HTTPConnection("127.0.0.1", helios.port, timeout=DEADLINE)
    connection.request("GET", f"/v1/videos/{video['id']}/content")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("transfer-encoding") == "chunked"
    first = response.read1(1 << 16)
    assert first[4:8] == b"ftyp"  # the MP4 begins before the video is done
    assert helios.video(video["id"])["status"] == "in_progress"
    steered = helios.call("POST", f"/v1/videos/{video['id']}/prompts", {"prompt": "a robot dances"})
    assert steered.status == 200, steered.body
    taken = wait_for(
        lambda: (
            (found := sidecar(helios, video["id"]))
            and any(cue["prompt"] == "a robot dances" for cue in found["stream"]["prompts"])
            and found
        ),
        "the steering prompt in the sidecar",
    )
    robot = next(cue for cue in taken["stream"]["prompts"] if cue["prompt"] == "a robot dances")
    assert robot["chunk"] >= 1
    assert helios.call("POST", f"/v1/videos/{video['id']}/prompts", {"prompt": "/quit"}).status == 200
    rest = response.read()  # the response ends when the stream does
    connection.close()
    done = helios.wait_status(video["id"], "completed", "failed")
    assert done["status"] == "completed", done
    streamed = first + rest
    stored = (helios.folder / f"{video['id']}.mp4").read_bytes()
    assert streamed == stored
    frames = iio.imread(stored, extension=".mp4")
    final = sidecar(helios, video["id"])
    assert final["stream"]["status"] == "ended" and len(frames) == final["stream"]["chunks"] * CHUNK
    csv = (helios.folder / f"{video['id']}.mp4.prompts.csv").read_text()
    assert "a robot dances" in csv
    words = shlex.split(final["command"])
    assert "--prompt-file" in words and "--whole-chunks" in words
    words[words.index("-o") + 1] = str(tmp_path / "replay.mp4")
    replay = vidgen(*words[1:], "--quiet")  # as `vidgen stream` replays a --live stream's sidecar
    assert replay.exit_code == 0, replay.stderr
    again = iio.imread(tmp_path / "replay.mp4")
    assert again.shape == frames.shape and np.array_equal(again, frames)


def test_deleting_a_running_stream_stops_it_and_removes_its_files(helios):
    video_id = helios.create(prompt="a long walk", stream=True, frames=LONG)["id"]
    wait_for(lambda: (found := sidecar(helios, video_id)) and found["stream"]["chunks"] >= 1, "a first chunk")
    assert helios.call("DELETE", f"/v1/videos/{video_id}").status == 200
    assert helios.call("GET", f"/v1/videos/{video_id}").status == 404
    wait_for(lambda: not list(helios.folder.glob(f"*{video_id}*")), "the stream's files to go")
    after = helios.create(prompt="next", frames=33)  # the worker is free again
    assert helios.wait_status(after["id"], "completed", "failed")["status"] == "completed"


def test_an_uploaded_image_is_animated_and_kept_under_the_servers_name(helios):
    image = io.BytesIO()
    iio.imwrite(image, np.full((32, 48, 3), 200, np.uint8), extension=".png")
    body, headers = multipart(
        {"prompt": "it moves", "seed": "1"}, {"input_reference": ("../x.png", image.getvalue())}
    )
    answer = helios.call("POST", "/v1/videos", body, headers)
    assert answer.status == 200, answer.body
    video_id = answer.json()["id"]
    assert helios.wait_status(video_id, "completed", "failed")["status"] == "completed"
    assert (helios.folder / "uploads" / video_id).exists() and not (helios.folder.parent / "x.png").exists()
    assert '"mode": "i2v"' in (helios.folder / f"{video_id}.mp4.json").read_text()


def test_a_bad_image_is_400_with_the_i2v_line(helios):
    body, headers = multipart({"prompt": "it moves"}, {"input_reference": ("a.png", b"not an image")})
    answer = helios.call("POST", "/v1/videos", body, headers)
    message = answer.json()["error"]["message"]
    assert answer.status == 400 and message.startswith("cannot read image 'input_reference'"), message
    assert str(helios.folder) not in message


def test_a_steered_stream_run_again_after_a_kill_replays_its_steering_at_the_same_chunk(
    start_server, tmp_path, vidgen
):
    """SIGKILLed mid-stream, the server runs the stream again on restart: the prompt the first run took
    steers the same chunk, so the re-run is the video the viewer steered and its record says so."""
    folder = tmp_path / "videos"
    first = start_server(["--model", "tiny-helios", *FAST], folder=folder)
    video_id = first.create(prompt="a cat walks", stream=True, frames=LONG, seed=5)["id"]
    wait_for(lambda: (found := sidecar(first, video_id)) and found["stream"]["chunks"] >= 1, "a first chunk")
    assert first.call("POST", f"/v1/videos/{video_id}/prompts", {"prompt": "a robot dances"}).status == 200

    def steered_and_written() -> int | None:
        """The chunk the prompt steered, once that chunk is written."""
        stream = (sidecar(first, video_id) or {}).get("stream", {"prompts": [], "chunks": 0})
        robot = [cue["chunk"] for cue in stream["prompts"] if cue["prompt"] == "a robot dances"]
        return robot[0] if robot and stream["chunks"] > robot[0] else None

    steered_at = wait_for(steered_and_written, "the steered chunk written")  # >= 1: never 0
    first.process.kill()  # the stream is hundreds of chunks long: it is still running
    assert first.process.wait(DEADLINE) == -signal.SIGKILL

    again = start_server(["--model", "tiny-helios", *FAST], folder=folder)
    assert again.wait_status(video_id, "in_progress", "completed", "failed")["status"] == "in_progress"
    # Sent now, /quit waits until the re-run has passed the steered chunk: it ends the re-run there.
    assert again.call("POST", f"/v1/videos/{video_id}/prompts", {"prompt": "/quit"}).status == 200
    done = again.wait_status(video_id, "completed", "failed")
    assert done["status"] == "completed", done
    final = sidecar(again, video_id)
    assert final["stream"]["status"] == "ended" and final["stream"]["chunks"] > steered_at
    assert {"chunk": steered_at, "prompt": "a robot dances"} in final["stream"]["prompts"]
    with open(folder / f"{video_id}.mp4.prompts.csv", newline="") as recorded:
        assert [str(steered_at), "a robot dances"] in list(csv_files.reader(recorded))
    frames = iio.imread(folder / f"{video_id}.mp4", extension=".mp4")
    assert len(frames) == final["stream"]["chunks"] * CHUNK
    words = shlex.split(final["command"])
    words[words.index("-o") + 1] = str(tmp_path / "replay.mp4")
    replay = vidgen(*words[1:], "--quiet")
    assert replay.exit_code == 0, replay.stderr
    again_frames = iio.imread(tmp_path / "replay.mp4")
    assert again_frames.shape == frames.shape and np.array_equal(again_frames, frames)
    assert again.stop() == 0
