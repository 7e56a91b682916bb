"""Default palettes: road scenes in their published colours, black only for void."""

from __future__ import annotations

from segedge.runtime.draw import full_palette
from segedge.runtime.metadata import ROAD_PALETTES, default_palette

CAMVID_12 = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
             "Car", "Pedestrian", "Bicyclist", "Void")
CAMVID_RGB = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
              (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
              (0, 128, 192))


def test_camvid_with_void_gets_camvids_palette_and_black_void() -> None:
    assert default_palette(CAMVID_12) == (*CAMVID_RGB, (0, 0, 0))
    assert default_palette([n.lower() for n in CAMVID_12[:11]]) == CAMVID_RGB
    assert default_palette(["sky", "building", "pole", "road", "pavement", "tree",
                            "sign_symbol", "fence", "car", "pedestrian", "bicyclist"]) \
        == CAMVID_RGB


def test_no_class_is_black_unless_named_void() -> None:
    for n in (1, 2, 21, 256):
        colours = default_palette(n)
        assert len(colours) == n and len(set(colours)) == n and (0, 0, 0) not in colours
    voc = default_palette(["background", "aeroplane", "bicycle", "bird"])
    assert voc == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))  # VOC's own colours
    odd = default_palette(["Sky", "Road", "Car", "lane", "Unlabelled"])
    assert odd[:3] == (CAMVID_RGB[0], CAMVID_RGB[3], CAMVID_RGB[8])
    assert odd[3] != (0, 0, 0) and odd[3] not in odd[:3] and odd[4] == (0, 0, 0)
    assert full_palette(["sky", "road", "x"], [])[:2] == [CAMVID_RGB[0], CAMVID_RGB[3]]


def test_cityscapes_names_get_cityscapes_colours() -> None:
    city = ROAD_PALETTES["cityscapes"]
    got = default_palette(["road", "sidewalk", "building", "sky", "person", "car"])
    assert got == (city["road"], city["sidewalk"], city["building"], city["sky"],
                   city["person"], city["car"])
