"""Each endpoint of `vidgen serve` and each error status, against one keyed tiny-cogvideox server."""

import io
import uuid
from concurrent.futures import ThreadPoolExecutor

import imageio.v3 as iio
import numpy as np
from conftest import KEY, wait_for


def multipart(fields: dict, files: dict | None = None) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for name, (filename, data) in (files or {}).items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_health_says_ready_with_the_model(cog):
    answer = cog.call("GET", "/health", key=None)
    assert answer.status == 200 and answer.json() == {
        "status": "ready",
        "model": "tiny-cogvideox",
        "workers": 1,
    }


def test_a_video_is_queued_at_once_then_completes_and_downloads_with_ranges(cog):
    video = cog.create(prompt="a cat walks", seed=5, size="96x64", seconds="1")
    assert video["object"] == "video" and video["status"] == "queued" and video["progress"] == 0
    assert video["id"].startswith("video_") and isinstance(video["created_at"], int)
    assert video["model"] == "tiny-cogvideox" and video["size"] == "96x64" and video["seconds"] == "1.12"
    done = cog.wait_status(video["id"], "completed", "failed")
    assert done["status"] == "completed" and done["progress"] == 100, done
    assert done["completed_at"] >= done["created_at"]
    whole = cog.call("GET", f"/v1/videos/{video['id']}/content")
    assert whole.status == 200 and whole.headers["content-type"] == "video/mp4"
    frames = iio.imread(whole.body, extension=".mp4")
    assert frames.shape == (9, 64, 96, 3)  # 1 s at 8 fps: 8k+1 frames, rounded up
    part = cog.call("GET", f"/v1/videos/{video['id']}/content", headers={"Range": "bytes=10-99"})
    assert part.status == 206 and part.body == whole.body[10:100]
    sidecar = cog.folder / f"{video['id']}.mp4.json"
    assert '"seed": 5' in sidecar.read_text()


def test_a_multipart_form_is_taken_as_openai_clients_send_it(cog):
    body, headers = multipart({"prompt": "a dog runs", "seconds": "0.1", "steps": "1", "seed": "7"})
    answer = cog.call("POST", "/v1/videos", body, headers)
    assert answer.status == 200, answer.body
    video = answer.json()
    assert video["seconds"] == "0.12"  # one frame at 8 fps
    assert cog.wait_status(video["id"], "completed", "failed")["status"] == "completed"


def test_the_list_is_newest_first_and_pages_with_after(cog):
    ids = [cog.create(prompt=f"list {n}", frames=1)["id"] for n in range(3)]
    newest = cog.call("GET", "/v1/videos?limit=2").json()
    assert newest["object"] == "list" and [v["id"] for v in newest["data"]] == ids[::-1][:2]
    assert newest["has_more"] and newest["last_id"] == ids[1]
    after = cog.call("GET", f"/v1/videos?limit=1&after={ids[1]}").json()
    assert [v["id"] for v in after["data"]] == [ids[0]]
    oldest = cog.call("GET", "/v1/videos?order=asc&limit=100").json()["data"]
    assert [v["id"] for v in oldest][-3:] == ids
    for video_id in ids:
        cog.wait_status(video_id, "completed", "failed")


def test_delete_removes_a_finished_video_and_its_files(cog):
    video_id = cog.create(prompt="to delete", frames=1)["id"]
    cog.wait_status(video_id, "completed")
    assert (cog.folder / f"{video_id}.mp4").exists()
    answer = cog.call("DELETE", f"/v1/videos/{video_id}")
    assert answer.status == 200 and answer.json() == {
        "id": video_id,
        "object": "video.deleted",
        "deleted": True,
    }
    assert cog.call("GET", f"/v1/videos/{video_id}").status == 404
    assert not list(cog.folder.glob(f"*{video_id}*"))


def test_bad_input_is_400_with_the_line_the_cli_prints(cog):
    cases = {
        "--width 97 is not a multiple of 16 (use --width 96 or 112)": {"prompt": "x", "size": "97x64"},
        "--steps 0 is too small (at least 1)": {"prompt": "x", "steps": 0},
        "--guidance nan is not a finite number (pass e.g. --guidance 6)": {"prompt": "x", "guidance": "nan"},
        "the prompt is empty (send a prompt field)": {"prompt": "  "},
        "unknown field 'colour'": {"prompt": "x", "colour": "red"},
        "model 'sora-2' is not served here": {"prompt": "x", "model": "sora-2"},
        "size 'big' is not WIDTHxHEIGHT": {"prompt": "x", "size": "big"},
        "prompt is longer than 65536 bytes": {"prompt": "x" * 65537},
    }
    for message, fields in cases.items():
        answer = cog.call("POST", "/v1/videos", fields)
        error = answer.json()["error"]
        assert answer.status == 400 and error["message"].startswith(message), (fields, error)
        assert error["type"] == "invalid_request_error" and "\n" not in error["message"]


def test_an_image_for_a_model_without_image_input_is_400_and_not_kept(cog):
    image = io.BytesIO()
    iio.imwrite(image, np.zeros((64, 96, 3), np.uint8), extension=".png")
    body, headers = multipart(
        {"prompt": "animate"}, {"input_reference": ("../../etc/passwd", image.getvalue())}
    )
    answer = cog.call("POST", "/v1/videos", body, headers)
    assert answer.status == 400
    assert answer.json()["error"]["message"].startswith("'tiny-cogvideox' cannot do image-to-video")
    assert not list((cog.folder / "uploads").glob("*"))


def test_a_missing_or_wrong_key_is_401(cog):
    for key in (None, "wrong", KEY + "x"):
        for method, path in (("GET", "/v1/videos"), ("POST", "/v1/videos"), ("GET", "/v1/videos/video_x")):
            answer = cog.call(method, path, {"prompt": "x"} if method == "POST" else None, key=key)
            assert answer.status == 401, (key, path)
            assert answer.json()["error"]["code"] == "invalid_api_key"


def test_an_unknown_id_is_404_everywhere(cog):
    for method, path in (
        ("GET", "/v1/videos/video_nope"),
        ("GET", "/v1/videos/video_nope/content"),
        ("DELETE", "/v1/videos/video_nope"),
        ("POST", "/v1/videos/video_nope/prompts"),
        ("GET", "/v1/videos?after=video_nope"),
    ):
        body = {"prompt": "x"} if method == "POST" else None
        answer = cog.call(method, path, body)
        assert answer.status == 404 and answer.json()["error"]["code"] == "not_found", path


def test_steering_a_video_that_is_no_stream_is_409(cog):
    video_id = cog.create(prompt="not a stream", frames=1)["id"]
    answer = cog.call("POST", f"/v1/videos/{video_id}/prompts", {"prompt": "a robot"})
    assert (
        answer.status == 409 and "only a running stream can be steered" in answer.json()["error"]["message"]
    )
    cog.wait_status(video_id, "completed")


def test_a_request_over_the_upload_limit_is_413(cog):
    body, headers = multipart({"prompt": "big"}, {"input_reference": ("a.png", b"\0" * (70 << 10))})
    answer = cog.call("POST", "/v1/videos", body, headers)
    assert answer.status == 413 and answer.json()["error"]["code"] == "request_too_large"
    assert not (cog.folder / "uploads").exists() or not list((cog.folder / "uploads").glob("*"))


def test_100_concurrent_posts_against_a_queue_of_20_are_each_200_or_429_and_all_accepted_finish(cog):
    def post(n: int):
        return cog.call("POST", "/v1/videos", {"prompt": f"rush {n}", "frames": 1, "seed": n})

    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = list(pool.map(post, range(100)))
    assert {answer.status for answer in answers} <= {200, 429}
    accepted = [answer.json()["id"] for answer in answers if answer.status == 200]
    refused = [answer.json()["error"] for answer in answers if answer.status == 429]
    assert 20 <= len(accepted) < 100 and refused and refused[0]["code"] == "queue_full"
    for video_id in accepted:
        assert cog.wait_status(video_id, "completed", "failed")["status"] == "completed"


def test_the_key_is_never_logged_or_written(cog):
    wait_for(lambda: cog.call("GET", "/v1/videos?limit=1").status == 200, "an answer")
    assert KEY not in cog.output()
    for path in cog.folder.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_a_local_folder_is_served_under_its_own_name_not_its_path(tmp_path):
    from vidgen.serve.server import served_name

    folder = tmp_path / "private" / "my-wan-finetune"
    folder.mkdir(parents=True)
    assert served_name(str(folder)) == "my-wan-finetune"
    assert served_name("tiny-cogvideox") == "tiny-cogvideox"
    assert served_name("Wan-AI/Wan2.1-T2V-1.3B-Diffusers") == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
