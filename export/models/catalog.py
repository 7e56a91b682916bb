"""Every zoo entry, registered once, and the one table of pretrained weights.

Builders import their module lazily and receive their `Weights` from the
table below, so the file a name loads is written down in exactly one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from segedge.export import scenes
from segedge.export.models.registry import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    VOC_CLASSES,
    BuildRequest,
    ModelSpec,
    register,
)
from segedge.export.models.weights import Weights, WeightsMeta
from segedge.runtime.errors import CheckpointError
from segedge.runtime.metadata import default_palette

Builder = Callable[[BuildRequest], nn.Module]


def _coco() -> tuple[str, ...]:
    from segedge.export.models.maskrcnn import coco_categories

    return coco_categories()


# --- the weights table: every pretrained file the zoo knows ----------------------------------
_IMAGENET = WeightsMeta(dataset="ImageNet-1k", scope="backbone")
_VOC = WeightsMeta(dataset="COCO train2017 subset, VOC labels", classes=VOC_CLASSES)
_COCO = WeightsMeta(dataset="COCO train2017", classes=_coco())
_TV, _TVSEG, _TVDET = ("torchvision.models", "torchvision.models.segmentation",
                       "torchvision.models.detection")

VGG16 = Weights.from_torchvision(f"{_TV}:VGG16_Weights.IMAGENET1K_V1",
                                 "ImageNet VGG16 backbone (torchvision)", _IMAGENET)
MOBILENET_V2 = Weights.from_torchvision(f"{_TV}:MobileNet_V2_Weights.IMAGENET1K_V1",
                                        "ImageNet MobileNetV2 backbone (torchvision)", _IMAGENET)
RESNET50 = Weights.from_torchvision(f"{_TV}:ResNet50_Weights.IMAGENET1K_V1",
                                    "ImageNet ResNet-50 backbone (torchvision)", _IMAGENET)
RESNET18 = Weights.from_torchvision(f"{_TV}:ResNet18_Weights.IMAGENET1K_V1",
                                    "ImageNet ResNet-18 backbone (torchvision)", _IMAGENET)
_VOC_DESC = "torchvision COCO subset, VOC labels"
FCN_RESNET50 = Weights.from_torchvision(f"{_TVSEG}:FCN_ResNet50_Weights.DEFAULT", _VOC_DESC, _VOC)
DEEPLABV3_RESNET50 = Weights.from_torchvision(f"{_TVSEG}:DeepLabV3_ResNet50_Weights.DEFAULT",
                                              _VOC_DESC, _VOC)
DEEPLABV3_MOBILENET = Weights.from_torchvision(
    f"{_TVSEG}:DeepLabV3_MobileNet_V3_Large_Weights.DEFAULT", _VOC_DESC, _VOC)
LRASPP_MOBILENET = Weights.from_torchvision(f"{_TVSEG}:LRASPP_MobileNet_V3_Large_Weights.DEFAULT",
                                            _VOC_DESC, _VOC)
MASKRCNN_R50 = Weights.from_torchvision(f"{_TVDET}:MaskRCNN_ResNet50_FPN_Weights.DEFAULT",
                                        "torchvision COCO weights", _COCO)
MASKRCNN_R50_V2 = Weights.from_torchvision(f"{_TVDET}:MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT",
                                           "torchvision COCO weights", _COCO)
DEMO = Weights.from_package(
    "segedge.export.models:checkpoints/demo.pt",
    "segedge demo weights (shipped, generated road scenes)",
    WeightsMeta(dataset="segedge generated road scenes", classes=scenes.SCENE_CLASSES),
    remedy="train them with `python -m tools.train_demo`")


# --- builders ---------------------------------------------------------------------------------

def _no_pretrained(name: str, req: BuildRequest) -> None:
    if req.weights == "pretrained":
        raise CheckpointError(
            f"{name}: expected --weights random or --checkpoint PATH, got --weights pretrained "
            "(no published weights exist for this architecture)"
        )


def _backbone_enum(req: BuildRequest, weights: Weights) -> Any:
    """The torchvision enum for a backbone constructor, its file ensured to be here first."""
    if req.weights != "pretrained":
        return None
    weights.fetch()  # downloads when online, else one clear line
    return weights.enum()


def _fcn_vgg(variant: str, weights: Weights) -> Builder:
    def build(req: BuildRequest) -> nn.Module:
        from segedge.export.models import fcn_vgg

        model: nn.Module = getattr(fcn_vgg, variant)(req.num_classes)
        if req.weights == "pretrained":
            fcn_vgg.load_vgg16_backbone(model, weights.state_dict())
        return model

    return build


def _unet(req: BuildRequest) -> nn.Module:
    from segedge.export.models.unet import unet

    _no_pretrained("unet", req)
    return unet(req.num_classes)


def _segnet(req: BuildRequest) -> nn.Module:
    from segedge.export.models.segnet import segnet

    _no_pretrained("segnet", req)
    return segnet(req.num_classes)


def _deeplabv3plus(backbone: str, weights: Weights) -> Builder:
    def build(req: BuildRequest) -> nn.Module:
        from segedge.export.models import deeplabv3plus as dlp

        factory = (dlp.deeplabv3plus_mobilenet_v2 if backbone == "mobilenet_v2"
                   else dlp.deeplabv3plus_resnet50)
        return factory(req.num_classes, backbone_weights=_backbone_enum(req, weights))

    return build


def _fcn_resnet18(weights: Weights) -> Builder:
    def build(req: BuildRequest) -> nn.Module:
        from segedge.export.models.fcn_resnet import fcn_resnet18

        return fcn_resnet18(req.num_classes, backbone_weights=_backbone_enum(req, weights))

    return build


def _torchvision(factory: str, weights: Weights) -> Builder:
    def build(req: BuildRequest) -> nn.Module:
        from segedge.export.models.torchvision_models import torchvision_builder

        return torchvision_builder(factory, weights)(req)

    return build


def _demo(weights: Weights) -> Builder:
    def build(req: BuildRequest) -> nn.Module:
        from segedge.export.models.demo import DemoNet

        model = DemoNet(req.num_classes)
        if req.weights == "pretrained":
            expected = len(weights.meta.classes)
            if req.num_classes != expected:
                raise CheckpointError(
                    f"demo weights: expected --num-classes {expected}, got {req.num_classes}")
            weights.load(model, strict=True)
        return model

    return build


def _maskrcnn(factory: str, weights: Weights) -> Builder:
    def build(req: BuildRequest) -> nn.Module:
        from segedge.export.models.maskrcnn import torchvision_maskrcnn

        return torchvision_maskrcnn(factory, weights)(req)

    return build


def _realtime(module: str, factory: str, url: str) -> Builder:
    """A real-time road-scene network in its authors' layout; their checkpoint only via
    --checkpoint (segedge never downloads it: Google Drive links, training wrappers)."""
    def build(req: BuildRequest) -> nn.Module:
        import importlib

        if req.weights == "pretrained":
            raise CheckpointError(
                f"{factory}: expected --checkpoint PATH (the authors' Cityscapes file, {url}) "
                "or --weights random, got --weights pretrained (segedge does not download it)")
        model: nn.Module = getattr(importlib.import_module(f"segedge.export.models.{module}"),
                                   factory)(req.num_classes)
        return model

    return build


def _maskrcnn_mobilenet(req: BuildRequest) -> nn.Module:
    from segedge.export.models.maskrcnn import maskrcnn_mobilenet

    _no_pretrained("maskrcnn_mobilenet_v3_cars", req)
    return maskrcnn_mobilenet(req.num_classes)


# --- the entries ------------------------------------------------------------------------------
ROAD: dict[str, Any] = dict(classes=CAMVID_CLASSES, palette=CAMVID_PALETTE,
                            default_size=(352, 480))
VOC: dict[str, Any] = dict(classes=VOC_CLASSES, default_size=(512, 512))

for _variant, _desc in (("fcn32s", "stride-32 prediction"), ("fcn16s", "pool4 skip"),
                        ("fcn8s", "pool4 + pool3 skips")):
    register(ModelSpec(
        name=_variant, family="fcn", build=_fcn_vgg(_variant, VGG16), weights=VGG16,
        description=f"FCN (Long et al.) on VGG16, {_desc}, learned bilinear-initialised upsampling",
        **ROAD))
register(ModelSpec(name="unet", family="unet", build=_unet, stride=16,
                   description="U-Net (Ronneberger et al.), padded convs, concatenated skips",
                   **ROAD))
register(ModelSpec(name="segnet", family="segnet", build=_segnet, stride=32,
                   description="SegNet: VGG16-BN encoder keeping pool indices, max-unpool decoder",
                   **ROAD))
register(ModelSpec(name="deeplabv3plus", family="deeplab",
                   build=_deeplabv3plus("mobilenet_v2", MOBILENET_V2), weights=MOBILENET_V2,
                   description="DeepLab v3+ (MobileNetV2), atrous separable ASPP + decoder",
                   **ROAD))
register(ModelSpec(name="deeplabv3plus_resnet50", family="deeplab",
                   build=_deeplabv3plus("resnet50", RESNET50), weights=RESNET50,
                   description="DeepLab v3+ (ResNet-50), atrous separable ASPP + decoder",
                   **ROAD))
register(ModelSpec(name="fcn_resnet18", family="fcn", build=_fcn_resnet18(RESNET18),
                   weights=RESNET18, description="FCN-ResNet18, the jetson-inference edge FCN",
                   **ROAD))
for _name, _family, _weights, _desc in (
        ("fcn_resnet50", "fcn", FCN_RESNET50, "torchvision FCN-ResNet50"),
        ("deeplabv3_resnet50", "deeplab", DEEPLABV3_RESNET50, "torchvision DeepLab v3 ResNet-50"),
        ("deeplabv3_mobilenet_v3_large", "deeplab", DEEPLABV3_MOBILENET,
         "torchvision DeepLab v3 MobileNetV3-Large"),
        ("lraspp_mobilenet_v3_large", "lraspp", LRASPP_MOBILENET,
         "torchvision LR-ASPP MobileNetV3-Large (edge)")):
    register(ModelSpec(name=_name, family=_family, build=_torchvision(_name, _weights),
                       weights=_weights, description=_desc, **VOC))
register(ModelSpec(name="demo", family="demo", build=_demo(DEMO), weights=DEMO,
                   classes=scenes.SCENE_CLASSES, palette=scenes.SCENE_PALETTE,
                   default_size=(240, 320),
                   description="segedge's tiny demo net, trained on generated road scenes"))

# Real-time road-scene networks in their authors' parameter layout: the official Cityscapes
# checkpoints load strictly with --checkpoint (aux heads load, never export); the
# preprocessing is the authors' (README "Real-time road-scene networks").
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CITY: dict[str, Any] = dict(classes=CITYSCAPES_CLASSES,
                            palette=default_palette(CITYSCAPES_CLASSES), default_size=(512, 1024))
BISENETV2_URL = ("https://github.com/CoinCheung/BiSeNet/releases/download/0.0.0/"
                 "model_final_v2_city.pth")
DDRNET23_SLIM_URL = "https://drive.google.com/file/d/1d_K3Af5fKHYwxSo8HkxpnhiekhwovmiP/view"
PIDNET_S_URL = "https://drive.google.com/file/d/1JakgBam_GrzyUMp-NbEVVBPEIXLSCssH/view"
register(ModelSpec(name="bisenetv2", family="bisenet",
                   build=_realtime("bisenetv2", "bisenetv2", BISENETV2_URL),
                   mean=(0.3257, 0.3690, 0.3223), std=(0.2112, 0.2148, 0.2115),
                   description="BiSeNetV2 (CoinCheung/BiSeNet layout), detail + semantic "
                   "branches, guided aggregation; RGB, the authors' Cityscapes mean/std",
                   **CITY))
register(ModelSpec(name="ddrnet23_slim", family="ddrnet",
                   build=_realtime("ddrnet", "ddrnet23_slim", DDRNET23_SLIM_URL),
                   description="DDRNet-23-slim (ydhongHIT/DDRNet layout), dual-resolution "
                   "branches + DAPPM; RGB, ImageNet mean/std", **CITY))
register(ModelSpec(name="pidnet_s", family="pidnet",
                   build=_realtime("pidnet", "pidnet_s", PIDNET_S_URL),
                   description="PIDNet-S (XuJiacong/PIDNet layout), P/I/D branches, PAPPM, "
                   "boundary-guided fusion; RGB, ImageNet mean/std", **CITY))

# Instance segmentation: task "instance", exported by export.tasks.instance.
for _name, _weights, _desc in (
        ("maskrcnn_resnet50_fpn", MASKRCNN_R50, "Mask R-CNN ResNet-50 FPN (torchvision, COCO)"),
        ("maskrcnn_resnet50_fpn_v2", MASKRCNN_R50_V2,
         "Mask R-CNN ResNet-50 FPN v2 (torchvision, COCO, improved recipe)")):
    register(ModelSpec(name=_name, family="maskrcnn", build=_maskrcnn(_name, _weights),
                       weights=_weights, classes=_COCO.classes, default_size=(480, 640),
                       description=_desc, task="instance"))
register(ModelSpec(name="maskrcnn_mobilenet_v3_cars", family="maskrcnn",
                   build=_maskrcnn_mobilenet, classes=("background", "car"),
                   palette=((0, 0, 0), (230, 30, 30)), default_size=(192, 256),
                   description="light Mask R-CNN (MobileNetV3 FPN-64) for generated car scenes; "
                   "train with tools.instance_train, export with --checkpoint",
                   task="instance"))
