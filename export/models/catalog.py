"""Every zoo entry, registered once.  Builders import their module lazily."""

from __future__ import annotations

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
from segedge.export.models.weights import load_torchvision_state, pretrained_cached
from segedge.runtime.errors import CheckpointError


def _no_pretrained(name: str, req: BuildRequest) -> None:
    if req.weights == "pretrained":
        raise CheckpointError(
            f"{name}: expected --weights random or --checkpoint PATH, got --weights pretrained "
            "(no published weights exist for this architecture)"
        )


def _backbone_enum(req: BuildRequest, enum: Any) -> Any:
    """The torchvision backbone weights to use, ensured to be in the local cache."""
    if req.weights != "pretrained":
        return None
    if not pretrained_cached(enum):
        load_torchvision_state(enum)  # downloads when online, else one clear line
    return enum


def _fcn_vgg(variant: str) -> Any:
    def build(req: BuildRequest) -> nn.Module:
        from torchvision.models import VGG16_Weights

        from segedge.export.models import fcn_vgg

        model: nn.Module = getattr(fcn_vgg, variant)(req.num_classes)
        if req.weights == "pretrained":
            fcn_vgg.load_vgg16_backbone(model, load_torchvision_state(VGG16_Weights.IMAGENET1K_V1))
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


def _deeplabv3plus(backbone: str) -> Any:
    def build(req: BuildRequest) -> nn.Module:
        from torchvision.models import MobileNet_V2_Weights, ResNet50_Weights

        from segedge.export.models import deeplabv3plus as dlp

        if backbone == "mobilenet_v2":
            enum = _backbone_enum(req, MobileNet_V2_Weights.IMAGENET1K_V1)
            return dlp.deeplabv3plus_mobilenet_v2(req.num_classes, backbone_weights=enum)
        enum = _backbone_enum(req, ResNet50_Weights.IMAGENET1K_V1)
        return dlp.deeplabv3plus_resnet50(req.num_classes, backbone_weights=enum)

    return build


def _fcn_resnet18(req: BuildRequest) -> nn.Module:
    from torchvision.models import ResNet18_Weights

    from segedge.export.models.fcn_resnet import fcn_resnet18

    return fcn_resnet18(req.num_classes, backbone_weights=_backbone_enum(
        req, ResNet18_Weights.IMAGENET1K_V1))


def _torchvision(attr: str) -> Any:
    def build(req: BuildRequest) -> nn.Module:
        from segedge.export.models import torchvision_models

        builder = getattr(torchvision_models, attr)
        return builder(req)  # type: ignore[no-any-return]

    return build


def _demo(req: BuildRequest) -> nn.Module:
    from segedge.export.models.demo import load_demo

    return load_demo(req.num_classes, pretrained=req.weights == "pretrained")


ROAD = dict(classes=CAMVID_CLASSES, palette=CAMVID_PALETTE, default_size=(352, 480))
VOC = dict(classes=VOC_CLASSES, default_size=(512, 512),
           pretrained="torchvision COCO subset, VOC labels")

for _variant, _desc in (("fcn32s", "stride-32 prediction"), ("fcn16s", "pool4 skip"),
                        ("fcn8s", "pool4 + pool3 skips")):
    register(ModelSpec(
        name=_variant, family="fcn", build=_fcn_vgg(_variant),
        pretrained="ImageNet VGG16 backbone (torchvision)",
        description=f"FCN (Long et al.) on VGG16, {_desc}, learned bilinear-initialised upsampling",
        **ROAD))  # type: ignore[arg-type]
register(ModelSpec(name="unet", family="unet", build=_unet, stride=16,
                   description="U-Net (Ronneberger et al.), padded convs, concatenated skips",
                   **ROAD))  # type: ignore[arg-type]
register(ModelSpec(name="segnet", family="segnet", build=_segnet, stride=32,
                   description="SegNet: VGG16-BN encoder keeping pool indices, max-unpool decoder",
                   **ROAD))  # type: ignore[arg-type]
register(ModelSpec(name="deeplabv3plus", family="deeplab", build=_deeplabv3plus("mobilenet_v2"),
                   pretrained="ImageNet MobileNetV2 backbone (torchvision)",
                   description="DeepLab v3+ (MobileNetV2), atrous separable ASPP + decoder",
                   **ROAD))  # type: ignore[arg-type]
register(ModelSpec(name="deeplabv3plus_resnet50", family="deeplab",
                   build=_deeplabv3plus("resnet50"),
                   pretrained="ImageNet ResNet-50 backbone (torchvision)",
                   description="DeepLab v3+ (ResNet-50), atrous separable ASPP + decoder",
                   **ROAD))  # type: ignore[arg-type]
register(ModelSpec(name="fcn_resnet18", family="fcn", build=_fcn_resnet18,
                   pretrained="ImageNet ResNet-18 backbone (torchvision)",
                   description="FCN-ResNet18, the jetson-inference edge FCN", **ROAD))  # type: ignore[arg-type]
register(ModelSpec(name="fcn_resnet50", family="fcn", build=_torchvision("FCN_RESNET50"),
                   description="torchvision FCN-ResNet50", **VOC))  # type: ignore[arg-type]
register(ModelSpec(name="deeplabv3_resnet50", family="deeplab",
                   build=_torchvision("DEEPLABV3_RESNET50"),
                   description="torchvision DeepLab v3 ResNet-50", **VOC))  # type: ignore[arg-type]
register(ModelSpec(name="deeplabv3_mobilenet_v3_large", family="deeplab",
                   build=_torchvision("DEEPLABV3_MOBILENET"),
                   description="torchvision DeepLab v3 MobileNetV3-Large", **VOC))  # type: ignore[arg-type]
register(ModelSpec(name="lraspp_mobilenet_v3_large", family="lraspp",
                   build=_torchvision("LRASPP_MOBILENET"),
                   description="torchvision LR-ASPP MobileNetV3-Large (edge)", **VOC))  # type: ignore[arg-type]
register(ModelSpec(name="demo", family="demo", build=_demo, classes=scenes.SCENE_CLASSES,
                   palette=scenes.SCENE_PALETTE, default_size=(240, 320),
                   pretrained="segedge demo weights (shipped, generated road scenes)",
                   description="segedge's tiny demo net, trained on generated road scenes",
                   tags=("default-pretrained",)))


# --- instance segmentation (issue 6): task "instance", exported by instance_export ---------

def _maskrcnn(attr: str) -> Any:
    def build(req: BuildRequest) -> nn.Module:
        from segedge.export.models import maskrcnn

        return getattr(maskrcnn, attr)(req)  # type: ignore[no-any-return]

    return build


def _maskrcnn_mobilenet(req: BuildRequest) -> nn.Module:
    from segedge.export.models.maskrcnn import maskrcnn_mobilenet

    _no_pretrained("maskrcnn_mobilenet_v3_cars", req)
    return maskrcnn_mobilenet(req.num_classes)


def _coco() -> tuple[str, ...]:
    from segedge.export.models.maskrcnn import coco_categories

    return coco_categories()


for _name, _desc in (("maskrcnn_resnet50_fpn", "Mask R-CNN ResNet-50 FPN (torchvision, COCO)"),
                     ("maskrcnn_resnet50_fpn_v2",
                      "Mask R-CNN ResNet-50 FPN v2 (torchvision, COCO, improved recipe)")):
    register(ModelSpec(name=_name, family="maskrcnn", build=_maskrcnn(_name), classes=_coco(),
                       default_size=(480, 640), pretrained="torchvision COCO weights",
                       description=_desc, task="instance"))
register(ModelSpec(name="maskrcnn_mobilenet_v3_cars", family="maskrcnn",
                   build=_maskrcnn_mobilenet, classes=("background", "car"),
                   palette=((0, 0, 0), (230, 30, 30)), default_size=(192, 256),
                   description="light Mask R-CNN (MobileNetV3 FPN-64) for generated car scenes; "
                   "train with tools.instance_train, export with --checkpoint",
                   task="instance"))
