"""Write a stand-in for DenseDepth's nyu_data.zip (real layout, codecs and size) from the embedded sample frames.

Usage: .venv/bin/python benchmarks/make_standin.py --out /tmp/depth_scale/nyu_data.zip [--frames 51342] [--workers 2]

--frames counts train + test frames (51,342 = the real archive: 50,688 train in 284 scenes + 654 test);
see depthlib/data/standin.py for how the frames are made.
"""

from __future__ import annotations

from _common import script_parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry; prints what was written."""
    ap = script_parser(__doc__, "none: it writes the stand-in archive (--out, a zip) and prints what it wrote")
    ap.add_argument("--out", required=True, help="the zip to write (a .partial beside it until complete)")
    ap.add_argument("--frames", type=int, default=None, help="train + test frames (default: the real archive's 51,342)")
    ap.add_argument("--test", type=int, default=None, help="test frames among them (default: the real archive's 654)")
    ap.add_argument("--scenes", type=int, default=0, help="train scene folders (0: the real ~178 frames a scene, max 284)")
    ap.add_argument("--workers", type=int, default=2, help="rendering processes (0: in this process)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from depthlib.data.standin import FULL_TEST, FULL_TRAIN, StandinSettings, write_standin  # numpy, PIL: after --help

    test = FULL_TEST if a.test is None else a.test
    frames = FULL_TRAIN + FULL_TEST if a.frames is None else a.frames
    info = write_standin(a.out, n_frames=frames, n_test=test, n_scenes=a.scenes or None,
                         settings=StandinSettings(seed=a.seed), workers=a.workers)
    print(f"{info.path}: {info.n_train} train frames in {info.n_scenes} scenes + {info.n_test} test frames, "
          f"{info.bytes / 1e9:.2f} GB, {info.seconds:.0f} s ({info.frames_per_s:.1f} frames/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
