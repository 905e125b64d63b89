"""The official `openai` package, pointed at `vidgen serve`, drives it unchanged: create, retrieve,
download_content, list, delete (OpenAI marks these methods deprecated; the shape is what counts)."""

import warnings

import imageio.v3 as iio
import openai
import pytest
from conftest import KEY, wait_for


@pytest.fixture
def client(cog):
    return openai.OpenAI(api_key=KEY, base_url=f"http://127.0.0.1:{cog.port}/v1", max_retries=0)


def test_the_openai_client_creates_polls_downloads_lists_and_deletes_a_video(client, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        video = client.videos.create(
            model="tiny-cogvideox", prompt="a cat walks", size="96x64", seconds="1", extra_body={"seed": 2}
        )
        assert video.status == "queued" and video.object == "video" and video.seconds == "1.12"
        done = wait_for(
            lambda: (found := client.videos.retrieve(video.id)).status in ("completed", "failed") and found,
            "the video to finish",
        )
        assert done.status == "completed" and done.progress == 100 and done.size == "96x64"
        content = client.videos.download_content(video.id)
        content.write_to_file(tmp_path / "cat.mp4")
        assert iio.imread(tmp_path / "cat.mp4").shape == (9, 64, 96, 3)
        listed = client.videos.list(limit=100)
        assert video.id in [item.id for item in listed.data]
        deleted = client.videos.delete(video.id)
        assert deleted.deleted and deleted.id == video.id
        with pytest.raises(openai.NotFoundError):
            client.videos.retrieve(video.id)


def test_the_openai_client_raises_its_own_errors(client, cog):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(openai.BadRequestError, match="is not a multiple of 16"):
            client.videos.create(prompt="a cat", size="97x64")
        wrong = openai.OpenAI(api_key="wrong", base_url=f"http://127.0.0.1:{cog.port}/v1", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.videos.list()
