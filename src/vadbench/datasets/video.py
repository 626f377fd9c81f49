"""Video files into numbered frame files, for layouts that ship ``.avi`` videos (Avenue,
ShanghaiTech's training split).

Every frame the decoder returns is written as ``000000.jpg``, ``000001.jpg`` ... (RGB, JPEG
quality 95) so the canonical conversion can treat a decoded video like any frame folder.

Pitfalls handled: PyAV raises its own ``FFmpegError`` family (some also ``OSError`` or
``ValueError``) at open time *and* in the middle of a stream, so both are turned into a
:class:`~vadbench.errors.DatasetError` naming the file and the frame reached; a file without a
video stream, or one that yields no frame at all, is an error rather than an empty video; a
frame above Pillow's pixel limit is refused before it is converted, and a video of more than
``MAX_FRAMES`` frames before it fills the disk.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from vadbench.errors import DatasetError

JPEG_QUALITY = 95
# The longest test or training video of the supported datasets has a few thousand frames; a million
# (9 hours at 30 fps) bounds what one crafted file can write to the disk.
MAX_FRAMES = 1_000_000


def decode_video(avi: Path, out_dir: Path) -> list[Path]:
    """Decode every frame of ``avi`` into ``out_dir/000000.jpg`` ... and return the paths in order.

    Args:
        avi: The video file (any container and codec FFmpeg reads, typically ``.avi``).
        out_dir: The folder to write the frames into; created if missing.

    Returns:
        The frame files written, in decoding order.

    Raises:
        DatasetError: PyAV cannot open or decode ``avi``, it holds no video stream, or it
            yields no frame.
    """
    import av  # here: every job that imports a layout would pay for PyAV, and few decode video

    av_errors = (av.FFmpegError, OSError, ValueError, IndexError)
    avi = Path(avi)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    try:
        container = av.open(str(avi))
    except av_errors as err:
        raise _undecodable(avi, err, 0) from None
    with container:
        if not container.streams.video:
            raise DatasetError(
                f"{avi}: no video stream in this file; expected a video (e.g. .avi). "
                "Re-extract or re-download the dataset."
            )
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
                if frame.width * frame.height > Image.MAX_IMAGE_PIXELS:
                    raise DatasetError(
                        f"{avi}: frame {len(paths)} is {frame.width}x{frame.height}, above the limit of "
                        f"{Image.MAX_IMAGE_PIXELS} pixels (Pillow's decompression-bomb guard); no surveillance "
                        "video is this large. Re-encode the video at its dataset's resolution."
                    )
                image = frame.to_ndarray(format="rgb24")
            except StopIteration:
                break
            except av_errors as err:
                raise _undecodable(avi, err, len(paths)) from None
            if len(paths) >= MAX_FRAMES:
                raise DatasetError(
                    f"{avi}: decodes to more than {MAX_FRAMES:,} frames (vadbench.datasets.video.MAX_FRAMES); no "
                    "dataset video is this long. Cut the video into shorter clips, or check that it is not corrupt."
                )
            # outside the PyAV try: an OSError here (disk full) is not a corrupt video
            path = out_dir / f"{len(paths):06d}.jpg"
            Image.fromarray(image).save(path, quality=JPEG_QUALITY)
            paths.append(path)
    if not paths:
        raise DatasetError(
            f"{avi}: the video decodes to 0 frames; expected at least one. Re-extract or re-download the dataset."
        )
    return paths


def _undecodable(avi: Path, err: Exception, decoded: int) -> DatasetError:
    where = f" after {decoded} frame(s)" if decoded else ""
    return DatasetError(
        f"{avi}: PyAV cannot decode this video{where} ({err}). The file is corrupt or truncated: "
        "re-extract or re-download the dataset."
    )
