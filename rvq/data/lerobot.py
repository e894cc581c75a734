"""LeRobot datasets (layouts v2.1 and v3.0) read as rvq episodes (`rvq.data.lerobot_write` writes rvq demos as one).

What is read (LeRobot's `LeRobotDataset` layout; `meta/info.json` names the version):

    meta/info.json   codebase_version "v2.1" | "v3.0", fps, chunks_size, features {name: {dtype, shape}},
                     data_path, video_path (templates)
    v2.1             meta/tasks.jsonl {task_index, task}; meta/episodes.jsonl {episode_index, tasks, length};
                     data/chunk-{c:03d}/episode_{e:06d}.parquet (one episode per file);
                     videos/chunk-{c:03d}/{key}/episode_{e:06d}.mp4
    v3.0             meta/tasks.parquet (task strings, task_index); meta/episodes/chunk-*/file-*.parquet (per episode:
                     length, videos/{key}/{chunk_index, file_index, from_timestamp, to_timestamp});
                     data/chunk-*/file-*.parquet (many episodes per file); videos/{key}/chunk-*/file-*.mp4
    frames           action [A], episode_index, frame_index, task_index, timestamp, index; cameras as `image`
                     features (PNG bytes inside the parquet) or `video` features (mp4, decoded with imageio's ffmpeg)

Each LeRobot task is one rvq task (task ids in `task_index` order), each episode one `Episode`
(`source` = the dataset folder, `demo` = `episode_{index:06d}`), split by episode like HDF5 demos.

Orientation: LIBERO's LeRobot datasets store upright frames (OpenVLA's RLDS conversion turned the simulator's renders
by 180°), while rvq's demo files and policies work on the renders as they come (a policy's observation steps turn them).
`read_lerobot_frames` therefore turns LeRobot frames by 180° back, and `write_lerobot_dataset` turns rvq's renders
upright, so one preprocessing path serves both formats.

pyarrow reads and writes the parquet files (`pip install "rvq[lerobot]"`).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from rvq.data.episode import ARM_DIM, Episode

VERSIONS = ("v2.1", "v3.0")
FRAME_COLUMNS = ("action", "episode_index", "frame_index", "task_index")
# LIBERO's HDF5 observation names and the names LIBERO's LeRobot datasets give the same cameras.
CAMERA_ALIASES = {"agentview_rgb": "observation.images.image", "eye_in_hand_rgb": "observation.images.wrist_image"}
DEFAULT_FPS = 20  # LIBERO's control rate
V21_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V30_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V30_EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"


def load_pyarrow():
    """pyarrow and pyarrow.parquet, or an error saying how to install them (an optional dependency)."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise ModuleNotFoundError('reading or writing LeRobot datasets needs pyarrow: pip install "rvq[lerobot]"') from exc
    return pyarrow, pyarrow.parquet


def is_lerobot_dataset(path: str | Path) -> bool:
    """A folder with `meta/info.json` (what LeRobot writes at a dataset's root)."""
    return (Path(path) / "meta" / "info.json").is_file()


def read_info(root: Path) -> dict[str, Any]:
    """`meta/info.json`, checked: a supported version, an `action` feature, a positive fps."""
    path = root / "meta" / "info.json"
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(info).__name__}")
    version = info.get("codebase_version")
    if version not in VERSIONS:
        raise ValueError(f"{path}: LeRobot layout {version!r} is not supported (rvq reads {VERSIONS}; convert older "
                         "datasets with LeRobot's own conversion scripts)")
    features = info.get("features")
    if not isinstance(features, dict) or "action" not in features:
        raise ValueError(f"{path}: no 'action' feature (features: {sorted(features) if isinstance(features, dict) else features})")
    for name, feature in features.items():
        if not isinstance(feature, dict) or not isinstance(feature.get("dtype"), str):
            raise ValueError(f"{path}: features.{name} must be an object with a dtype, got {feature!r}")
        shape = feature.get("shape")
        if not isinstance(shape, list) or not all(_whole(n) and n > 0 for n in shape):
            raise ValueError(f"{path}: features.{name}.shape must be a list of whole numbers > 0, got {shape!r}")
    fps = info.get("fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"{path}: 'fps' must be a finite positive number, got {fps!r}")
    for key in ("total_episodes", "total_frames", "chunks_size"):
        if key in info and not (_whole(info[key]) and info[key] >= (1 if key == "chunks_size" else 0)):
            raise ValueError(f"{path}: {key!r} must be a whole number, got {info[key]!r}")
    return info


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"LeRobot v2.1 metadata file not found: {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from exc
    return rows


def _task_table(pairs: list[tuple[Any, Any]], where: str) -> dict[int, str]:
    """(task_index, task text) rows → a table; an index that is not a whole number, a text that is not a string, or
    an index given twice is refused (the last text would silently win)."""
    tasks: dict[int, str] = {}
    for row, (index, text) in enumerate(pairs):
        if not _whole(index) or not isinstance(text, str):
            raise ValueError(f"{where} row {row}: task_index must be a whole number and task a string, got "
                             f"{index!r}, {text!r}")
        if index in tasks:
            raise ValueError(f"{where} row {row}: task_index {index} is given twice ({tasks[index]!r}, {text!r})")
        tasks[index] = text
    return tasks


def read_tasks(root: Path, version: str) -> dict[int, str]:
    """task_index → task text."""
    if version == "v2.1":
        rows = _read_jsonl(root / "meta" / "tasks.jsonl")
        try:
            return _task_table([(r["task_index"], r["task"]) for r in rows], f"{root}/meta/tasks.jsonl")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{root}/meta/tasks.jsonl: a row lacks {exc}") from exc
    _, pq = load_pyarrow()
    path = root / "meta" / "tasks.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"LeRobot v3.0 task table not found: {path}")
    table = pq.read_table(path)
    # LeRobot writes the task text as the pandas index of this table: a column named "task" (or an unnamed index)
    text = next((c for c in ("task", "__index_level_0__") if c in table.column_names), None)
    if "task_index" not in table.column_names or text is None:
        raise ValueError(f"{path}: expected columns task_index and task, found {table.column_names}")
    return _task_table(list(zip(table["task_index"].to_pylist(), table[text].to_pylist())), str(path))


def _data_files(root: Path) -> list[Path]:
    files = sorted((root / "data").rglob("*.parquet"))
    if not files:
        raise ValueError(f"{root}: a LeRobot dataset without data/**/*.parquet files")
    return files


@lru_cache(maxsize=8)
def _episode_files(root: Path, stamp: float) -> dict[int, tuple[Path, ...]]:
    """episode_index → the data files holding its frames (read from the files' episode_index columns)."""
    _, pq = load_pyarrow()
    where: dict[int, list[Path]] = {}
    for path in _data_files(root):
        for index in set(pq.read_table(path, columns=["episode_index"])["episode_index"].to_pylist()):
            where.setdefault(int(index), []).append(path)
    return {k: tuple(v) for k, v in where.items()}


def _frames(root: Path, episode_index: int, columns: Sequence[str]) -> dict[str, list]:
    """One episode's columns, ordered by frame_index, checked to be frames 0..T-1."""
    pyarrow, pq = load_pyarrow()
    from pyarrow import compute

    files = _episode_files(root, (root / "data").stat().st_mtime).get(episode_index)
    if not files:
        raise KeyError(f"{root}: no frames of episode {episode_index}")
    wanted = list(dict.fromkeys([*columns, "episode_index", "frame_index"]))
    parts = []
    for path in files:
        table = pq.read_table(path)
        missing = [c for c in wanted if c not in table.column_names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing} (has {table.column_names})")
        mask = compute.equal(table["episode_index"], episode_index)
        parts.append(table.select(wanted).filter(mask))
    table = pyarrow.concat_tables(parts)
    order = np.argsort(np.asarray(table["frame_index"].to_pylist()), kind="stable")
    frame_index = np.asarray(table["frame_index"].to_pylist())[order]
    if not np.array_equal(frame_index, np.arange(len(frame_index))):
        raise ValueError(f"{root}: episode {episode_index} has frame_index values that are not 0..{len(order) - 1} "
                         "(missing or repeated frames)")
    return {c: [table[c][int(i)].as_py() for i in order] for c in columns}


def read_lerobot_dataset(root: str | Path, task_offset: int = 0, action_dim: int = ARM_DIM,
                         split_arms: bool = True) -> list[Episode]:
    """Every episode of a LeRobot dataset folder as an `Episode` (actions `[T, action_dim]` float32, checked as HDF5
    actions are: finite, a width of `action_dim` or, with `split_arms`, a multiple of it)."""
    root = Path(root)
    info = read_info(root)
    tasks = read_tasks(root, info["codebase_version"])
    task_ids = {index: task_offset + rank for rank, index in enumerate(sorted(tasks))}
    cameras = tuple(sorted(k for k, v in info["features"].items() if v.get("dtype") in ("image", "video")))
    _, pq = load_pyarrow()
    frames: dict[int, list] = {}
    for path in _data_files(root):
        table = pq.read_table(path)
        missing = [c for c in FRAME_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing} (has {table.column_names})")
        columns = {c: table[c].to_pylist() for c in FRAME_COLUMNS}
        for number, row in enumerate(zip(*columns.values())):
            bad = [name for name, value in zip(FRAME_COLUMNS[1:], row[1:])
                   if not (_whole(value) and value >= 0)]
            if bad:
                raise ValueError(f"{path} row {number}: {bad} must be whole numbers >= 0, got "
                                 f"{[row[FRAME_COLUMNS.index(name)] for name in bad]}")
            frames.setdefault(row[1], []).append(row)
    episodes = []
    for index in sorted(frames):
        rows = sorted(frames[index], key=lambda r: r[2])
        where = f"{root}: episode {index}"
        if [r[2] for r in rows] != list(range(len(rows))):
            raise ValueError(f"{where}: frame_index values are not 0..{len(rows) - 1} (missing or repeated frames)")
        task_index = {int(r[3]) for r in rows}
        if len(task_index) != 1 or next(iter(task_index)) not in tasks:
            raise ValueError(f"{where}: task_index {sorted(task_index)} is not one task of meta/tasks "
                             f"({sorted(tasks)})")
        values = np.asarray([r[0] for r in rows], dtype=object)
        kinds = {type(v) for row in values.reshape(len(rows), -1) for v in row} if values.size else set()
        if not kinds <= {int, float} or values.ndim != 2:  # a string or bool stored as an action is refused, not cast
            raise ValueError(f"{where}: 'action' values must be equal-length lists of numbers, found "
                             f"{sorted(k.__name__ for k in kinds) or 'none'} with shape {list(values.shape)}")
        actions = values.astype(np.float32)
        if actions.ndim != 2 or actions.shape[1] == 0:
            raise ValueError(f"{where}: actions must be [T, A], got shape {list(actions.shape)}")
        bad = np.nonzero(~np.isfinite(actions).all(axis=1))[0]
        if bad.size:
            raise ValueError(f"{where}: {bad.size} action row(s) contain NaN/inf, first at frame {int(bad[0])}")
        task = next(iter(task_index))
        common = dict(source=str(root), demo=f"episode_{index:06d}", task_id=task_ids[task],
                      instruction=tasks[task], obs_keys=cameras)
        width = actions.shape[1]
        if width == action_dim:
            episodes.append(Episode(actions, **common))
        elif split_arms and width % action_dim == 0:
            episodes += [Episode(np.ascontiguousarray(actions[:, a * action_dim:(a + 1) * action_dim]), arm=a,
                                 **common) for a in range(width // action_dim)]
        else:
            raise ValueError(f"{where}: actions have width {width}; expected {action_dim}"
                             + (" or a multiple of it (multi-arm)" if split_arms else ""))
    if not episodes:
        raise ValueError(f"{root}: the LeRobot dataset holds no episodes")
    _check_counts(root, info, {index: len(rows) for index, rows in frames.items()})
    return episodes


def _check_counts(root: Path, info: dict[str, Any], lengths: dict[int, int]) -> None:
    """The frames read must be the dataset's whole: the episodes and lengths its episode metadata lists and the
    totals of `info.json` (a data file missing or cut short would otherwise read as a smaller dataset)."""
    meta = episode_metadata(root)
    where = f"{root}/meta/{'episodes.jsonl' if info['codebase_version'] == 'v2.1' else 'episodes'}"
    if sorted(meta) != sorted(lengths):
        missing, extra = sorted(set(meta) - set(lengths)), sorted(set(lengths) - set(meta))
        raise ValueError(f"{where} lists episodes the data files do not hold ({missing[:10]}) or the data holds "
                         f"episodes it does not list ({extra[:10]}): a data file missing or out of place")
    for index, row in sorted(meta.items()):
        if row.get("length") != lengths[index]:
            raise ValueError(f"{where}: episode {index} has length {row.get('length')!r} but the data files hold "
                             f"{lengths[index]} frames of it")
    totals = {"total_episodes": len(lengths), "total_frames": sum(lengths.values())}
    for key, found in totals.items():
        if key in info and info[key] != found:
            raise ValueError(f"{root}/meta/info.json: {key} is {info[key]} but the data files hold {found}")


def lerobot_task_count(root: str | Path) -> int:
    return len(read_tasks(Path(root), read_info(Path(root))["codebase_version"]))


def episode_index(episode: Episode) -> int:
    return int(episode.demo.removeprefix("episode_"))


def read_lerobot_frames(episode: Episode, key: str) -> np.ndarray:
    """One camera of a LeRobot episode, `[T, H, W, 3]` uint8 in the simulator's raw orientation (see the module
    docstring). `key`: the dataset's feature name or its LIBERO HDF5 name (`agentview_rgb`, `eye_in_hand_rgb`)."""
    root = Path(episode.source)
    info = read_info(root)
    name = key if key in info["features"] else CAMERA_ALIASES.get(key, key)
    feature = info["features"].get(name)
    if feature is None or feature.get("dtype") not in ("image", "video"):
        cameras = sorted(k for k, v in info["features"].items() if v.get("dtype") in ("image", "video"))
        raise KeyError(f"{episode.name}: no camera {key!r}; the dataset's cameras: {cameras}")
    if feature["dtype"] == "image":
        frames = _decode_images(_frames(root, episode_index(episode), [name])[name], f"{episode.name}: camera {name!r}")
    else:
        frames = _decode_video(root, info, name, episode_index(episode))
    if len(frames) != len(episode):
        raise ValueError(f"{episode.name}: camera {name!r} has {len(frames)} frames for {len(episode)} actions")
    return np.ascontiguousarray(frames[:, ::-1, ::-1])  # upright (LeRobot) -> the simulator's raw renders


def _decode_images(cells: list, where: str) -> np.ndarray:
    from PIL import Image

    images = []
    for i, cell in enumerate(cells):
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if not data:
            raise ValueError(f"{where}: image of frame {i} has no embedded bytes (an image stored as a path is not "
                             "supported)")
        try:
            images.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
        except (OSError, SyntaxError, ValueError) as exc:  # PIL: UnidentifiedImageError is an OSError
            raise ValueError(f"{where}: image of frame {i} cannot be decoded ({type(exc).__name__}: {exc})") from exc
    return np.stack(images)


def _decode_video(root: Path, info: dict[str, Any], key: str, index: int) -> np.ndarray:
    import imageio.v2 as imageio

    fps = float(info["fps"])
    if info["codebase_version"] == "v2.1":
        chunk = index // int(info.get("chunks_size", 1000))
        path = root / (info.get("video_path") or V21_VIDEO_PATH).format(episode_chunk=chunk, video_key=key,
                                                                        episode_index=index)
        start, stop = 0, None
    else:
        meta = _v30_episode_meta(root, index)
        prefix = f"videos/{key}/"
        try:
            path = root / (info.get("video_path") or V30_VIDEO_PATH).format(
                video_key=key, chunk_index=int(meta[prefix + "chunk_index"]), file_index=int(meta[prefix + "file_index"]))
            start = int(round(float(meta[prefix + "from_timestamp"]) * fps))
            stop = int(round(float(meta[prefix + "to_timestamp"]) * fps))
        except KeyError as exc:
            raise ValueError(f"{root}: episode {index}'s metadata lacks {exc} for video {key!r}") from exc
    if not path.is_file():
        raise FileNotFoundError(f"{root}: video of episode {index}, camera {key!r}, not found: {path}")
    with imageio.get_reader(path, format="ffmpeg") as reader:
        frames = [frame for i, frame in enumerate(reader) if i >= start and (stop is None or i < stop)]
    if not frames:
        raise ValueError(f"{root}: episode {index}, camera {key!r}: no frames in {path} from frame {start}")
    return np.stack(frames).astype(np.uint8)


def episode_metadata(root: str | Path) -> dict[int, dict[str, Any]]:
    """episode_index → its row of `meta/episodes.jsonl` (v2.1) or `meta/episodes/*.parquet` (v3.0)."""
    root = Path(root)
    if read_info(root)["codebase_version"] == "v2.1":
        rows = _read_jsonl(root / "meta" / "episodes.jsonl")
    else:
        _, pq = load_pyarrow()
        rows = [row for path in sorted((root / "meta" / "episodes").rglob("*.parquet"))
                for row in pq.read_table(path).to_pylist()]
    indices = [row.get("episode_index") for row in rows]
    if not all(_whole(i) for i in indices):
        raise ValueError(f"{root}: episode metadata rows need a whole-number episode_index, got {indices}")
    if len(set(indices)) != len(indices):
        raise ValueError(f"{root}: episode metadata gives an episode_index twice ({sorted(indices)})")
    _check_video_ranges(root, rows)
    return {row["episode_index"]: row for row in rows}


def _check_video_ranges(root: Path, rows: list[dict[str, Any]]) -> None:
    """v3.0: episodes that share a video file must own disjoint time ranges of it (else an episode would get
    another's frames)."""
    spans: dict[tuple[str, Any, Any], list[tuple[float, float, int]]] = {}
    for row in rows:
        for key in row:
            if key.startswith("videos/") and key.endswith("/from_timestamp"):
                prefix = key[: -len("from_timestamp")]
                where = (prefix, row.get(prefix + "chunk_index"), row.get(prefix + "file_index"))
                spans.setdefault(where, []).append((float(row[key]), float(row[prefix + "to_timestamp"]),
                                                    row["episode_index"]))
    for (prefix, chunk, file), ranges in spans.items():
        ranges.sort()
        for (start_a, stop_a, a), (start_b, _, b) in zip(ranges, ranges[1:]):
            if start_b < stop_a or stop_a < start_a:
                raise ValueError(f"{root}: episodes {a} and {b} overlap in {prefix}chunk {chunk} file {file} "
                                 f"([{start_a}, {stop_a}) and from {start_b}); each episode's frames must be its own")


def _v30_episode_meta(root: Path, index: int) -> dict[str, Any]:
    meta = episode_metadata(root)
    if index not in meta:
        raise KeyError(f"{root}: episode {index} is not in meta/episodes")
    return meta[index]
