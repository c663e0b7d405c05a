"""depthlib.core.camera: intrinsics from the command line, a 35 mm-equivalent focal length, a field of view, EXIF,
and the order predict resolves them in; expected values computed by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PIL import Image

from depthlib.core.camera import NYU_KINECT, Camera, assumed_line, resolve
from depthlib.core.errors import ConfigError


def _jpeg(path: Path, size: tuple[int, int], *, f35: int | None = None, focal: float | None = None,
          plane_res: float | None = None, unit: int | None = None, orientation: int | None = None) -> Path:
    """A JPEG of `size` (W, H) whose EXIF carries the given focal-length tags."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    ifd = exif.get_ifd(0x8769)
    if f35 is not None:
        ifd[0xA405] = f35
    if focal is not None:
        ifd[0x920A] = focal
    if plane_res is not None:
        ifd[0xA20E] = plane_res
        ifd[0xA20F] = plane_res
    if unit is not None:
        ifd[0xA210] = unit
    Image.new("RGB", size, (90, 120, 150)).save(path, format="JPEG", exif=exif)
    return path


def test_parse_and_its_refusals() -> None:
    cam = Camera.parse("500,510,320.5,240", 640, 480)
    assert cam.intrinsics == (500.0, 510.0, 320.5, 240.0) and (cam.width, cam.height) == (640, 480)
    assert cam.source == "--intrinsics 500,510,320.5,240"
    for bad in ("0,500,320,240", "500,-1,320,240", "nan,500,320,240", "500,500,inf,240"):
        with pytest.raises(ConfigError, match="--intrinsics: the focal lengths FX, FY must be positive"):
            Camera.parse(bad, 640, 480)
    for bad in ("500,500,320", "a,b,c,d", ""):
        with pytest.raises(ConfigError, match="--intrinsics must be 4 comma-separated numbers"):
            Camera.parse(bad, 640, 480)


def test_35mm_equivalent_is_by_the_diagonal() -> None:
    # a 3600x2400 image of a full-frame sensor has 100 px per mm, so a 50 mm lens is 5000 px
    cam = Camera.from_focal_35mm(50, 3600, 2400)
    assert cam.fx == pytest.approx(5000.0, rel=1e-12) and cam.fy == cam.fx
    assert (cam.cx, cam.cy) == (1799.5, 1199.5)
    # a phone's 26 mm at 4032x3024 (diagonal 5040 px): 26 / 43.2666 * 5040 = 3028.66 px
    assert Camera.from_focal_35mm(26, 4032, 3024).fx == pytest.approx(3028.66, abs=0.01)
    with pytest.raises(ConfigError, match="--focal-35mm 0: .* must be positive"):
        Camera.from_focal_35mm(0, 640, 480)


def test_field_of_view_is_horizontal_over_the_full_width() -> None:
    cam = Camera.from_fov(90, 640, 480)          # tan 45 = 1: fx = 640 / 2
    assert cam.intrinsics == pytest.approx((320.0, 320.0, 319.5, 239.5))
    assert Camera.from_fov(60, 1000, 500).fx == pytest.approx(500 / math.tan(math.radians(30)))   # 866.03
    assert cam.hfov_deg == pytest.approx(90.0)
    for bad in (0, 180, float("nan")):
        with pytest.raises(ConfigError, match="--fov"):
            Camera.from_fov(bad, 640, 480)


def test_nyu_kinect_is_the_projects_camera() -> None:
    from depthlib.data.kinect import KinectCalibration

    assert NYU_KINECT.intrinsics == KinectCalibration().rgb_intrinsics
    assert NYU_KINECT.intrinsics == pytest.approx((518.857901, 519.469611, 325.582449, 253.736166), abs=1e-6)
    assert NYU_KINECT.hfov_deg == pytest.approx(63.33, abs=0.01)   # 2 atan(640 / (2 x 518.858))


def test_resized_scales_focal_and_centre() -> None:
    half = NYU_KINECT.resized(320, 240)
    # focal x 0.5; centre (325.582449 + 0.5) x 0.5 - 0.5 = 162.5412245 (pixel centres at integers)
    assert half.intrinsics == pytest.approx((259.4289505, 259.7348055, 162.5412245, 126.618083))
    assert half.hfov_deg == pytest.approx(NYU_KINECT.hfov_deg)
    back = half.resized(640, 480)
    assert back.intrinsics == pytest.approx(NYU_KINECT.intrinsics, rel=1e-12)


def test_exif_35mm_focal_length(tmp_path: Path) -> None:
    cam = Camera.from_exif(_jpeg(tmp_path / "a.jpg", (360, 240), f35=50))
    assert cam is not None and cam.fx == pytest.approx(500.0) and (cam.cx, cam.cy) == (179.5, 119.5)
    assert cam.source == "EXIF FocalLengthIn35mmFilm 50 mm of a.jpg"


def test_exif_focal_length_with_the_sensor_pixel_pitch(tmp_path: Path) -> None:
    # 4 mm lens, 250 px per mm on the sensor: 1000 px; the same pitch in inches (6350 px/inch), unit 2
    cam = Camera.from_exif(_jpeg(tmp_path / "mm.jpg", (320, 240), focal=4.0, plane_res=250.0, unit=4))
    assert cam is not None and cam.intrinsics == pytest.approx((1000.0, 1000.0, 159.5, 119.5))
    cam = Camera.from_exif(_jpeg(tmp_path / "in.jpg", (320, 240), focal=4.0, plane_res=6350.0, unit=2))
    assert cam is not None and cam.fx == pytest.approx(1000.0)
    # a focal length without the sensor's pitch says nothing about pixels
    assert Camera.from_exif(_jpeg(tmp_path / "f.jpg", (320, 240), focal=4.0)) is None
    assert Camera.from_exif(_jpeg(tmp_path / "none.jpg", (320, 240))) is None
    assert Camera.from_exif(_jpeg(tmp_path / "zero.jpg", (320, 240), f35=0)) is None   # 0: unknown


def test_exif_of_a_picture_stored_sideways_is_upright(tmp_path: Path) -> None:
    cam = Camera.from_exif(_jpeg(tmp_path / "side.jpg", (360, 240), f35=50, orientation=6))
    assert cam is not None and (cam.width, cam.height) == (240, 360) and (cam.cx, cam.cy) == (119.5, 179.5)


def test_resolve_order(tmp_path: Path) -> None:
    exif = _jpeg(tmp_path / "e.jpg", (360, 240), f35=50)
    plain = _jpeg(tmp_path / "p.jpg", (360, 240))
    cam, origin = resolve(360, 240, intrinsics="400,400,180,120", path=exif)
    assert origin == "intrinsics" and cam.fx == 400.0
    cam, origin = resolve(360, 240, focal_35mm=25, path=exif)
    assert origin == "focal_35mm" and cam.fx == pytest.approx(250.0)
    cam, origin = resolve(360, 240, fov=90, path=exif)
    assert origin == "fov" and cam.fx == pytest.approx(180.0)
    cam, origin = resolve(360, 240, path=exif)
    assert origin == "exif" and cam.fx == pytest.approx(500.0)
    cam, origin = resolve(360, 240, path=plain)
    assert origin == "assumed" and cam == NYU_KINECT.resized(360, 240)
    other = Camera(300.0, 300.0, 159.5, 119.5, 320, 240, source="the training camera (a checkpoint's)")
    cam, origin = resolve(640, 480, path=plain, training=other)
    assert origin == "assumed" and cam.fx == pytest.approx(600.0)
    with pytest.raises(ConfigError, match="--focal-35mm and --fov each state the camera"):
        resolve(360, 240, focal_35mm=25, fov=60)


def test_assumed_line_names_the_file_and_the_field_of_view(tmp_path: Path) -> None:
    cam, _ = resolve(640, 480, path=_jpeg(tmp_path / "room.jpg", (640, 480)))
    line = assumed_line(cam, tmp_path / "room.jpg")
    assert line.startswith("no camera given and no EXIF focal length in room.jpg: assumed the training camera "
                           "(NYU Kinect), 63.3° horizontal field of view")


def test_upright_size_reads_the_header(tmp_path: Path) -> None:
    from depthlib.core.camera import upright_size

    assert upright_size(_jpeg(tmp_path / "a.jpg", (360, 240))) == (360, 240)
    assert upright_size(_jpeg(tmp_path / "b.jpg", (360, 240), orientation=8)) == (240, 360)


def test_intrinsics_may_be_numbers() -> None:
    cam, origin = resolve(640, 480, intrinsics=(500.0, 510.0, 320.5, 240.0))
    assert origin == "intrinsics" and cam.intrinsics == (500.0, 510.0, 320.5, 240.0)
    assert cam.source == "--intrinsics 500,510,320.5,240"
