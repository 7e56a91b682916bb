"""Mask R-CNN for deployment: zoo builders and a fixed-shape export wrapper.

torchvision's Mask R-CNN returns a list of dicts whose length varies with
what it found.  TensorRT wants static shapes, so ``InstanceExportWrapper``
pads every output to ``max_detections`` and adds ``count`` (how many rows are
real).  Padding is F.pad + slice, which traces to a constant-shaped Pad/Slice
and works unchanged when nothing is detected (count 0, all-zero rows).

The wrapper takes raw uint8 NHWC bytes in the camera's colour order (or
0..1 float NCHW RGB) and does the colour flip itself; torchvision's own
transform (resize + ImageNet normalisation) stays inside the graph.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segedge.export.zoo.registry import BuildRequest
from segedge.runtime.errors import InputError

OUTPUT_NAMES = ("boxes", "labels", "scores", "masks", "count")
DEFAULT_MAX_DETECTIONS = 100


def coco_categories() -> tuple[str, ...]:
    """torchvision's 91 COCO category slots ("__background__" and "N/A" included)."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    cats = MaskRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]
    return tuple(str(c) for c in cats)


class InstanceExportWrapper(nn.Module):
    """Image in, padded detections out: boxes [1,N,4], labels/scores [1,N],
    masks [1,N,H,W] uint8 (0/1 at input resolution), count [1] int64."""

    def __init__(self, model: nn.Module, max_detections: int = DEFAULT_MAX_DETECTIONS,
                 input_format: str = "uint8", input_color: str = "BGR",
                 mask_threshold: float = 0.5) -> None:
        super().__init__()
        if max_detections < 1:
            raise InputError("--max-detections", "a positive integer", max_detections)
        self.model = model
        self.max_detections = int(max_detections)
        self.uint8 = input_format == "uint8"
        self.flip = self.uint8 and input_color == "BGR"
        self.mask_threshold = float(mask_threshold)
        roi = getattr(model, "roi_heads", None)
        if roi is not None:  # never more than fit; the pad below then only adds rows
            roi.detections_per_img = min(int(roi.detections_per_img), self.max_detections)

    def image(self, x: torch.Tensor) -> torch.Tensor:
        """The 3xHxW 0..1 RGB float image torchvision expects."""
        if self.uint8:
            img = x[0].permute(2, 0, 1).float() / 255.0
            return img.flip(0) if self.flip else img
        return x[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        det: dict[str, torch.Tensor] = self.model([self.image(x)])[0]
        return pad_detections(det, self.max_detections, self.mask_threshold)


def _pad_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """Append n zero rows along dim 0, then keep the first n: a static [n, ...] shape."""
    pads = [0, 0] * (t.dim() - 1) + [0, n]
    return F.pad(t, pads)[:n]


def pad_detections(det: dict[str, torch.Tensor], n: int,
                   mask_threshold: float = 0.5) -> tuple[torch.Tensor, ...]:
    boxes = _pad_rows(det["boxes"].float(), n)
    scores = _pad_rows(det["scores"].float(), n)
    labels = _pad_rows(det["labels"].to(torch.int64), n)
    masks = det["masks"]  # [k,1,H,W] probabilities, already pasted at image size
    masks = _pad_rows((masks[:, 0] > mask_threshold).to(torch.uint8), n)
    count = torch.clamp(torch.ones_like(det["scores"], dtype=torch.int64).sum(), max=n)
    return (boxes.unsqueeze(0), labels.unsqueeze(0), scores.unsqueeze(0), masks.unsqueeze(0),
            count.reshape(1))


# --- builders ---------------------------------------------------------------------------

def _torchvision_maskrcnn(factory_name: str, weights_name: str) -> Any:
    def build(req: BuildRequest) -> nn.Module:
        from torchvision.models import detection

        from segedge.export.zoo.weights_io import load_matching, load_torchvision_state

        factory = getattr(detection, factory_name)
        model: nn.Module = factory(weights=None, weights_backbone=None,
                                   num_classes=req.num_classes)
        if req.weights == "pretrained":
            enum = getattr(detection, weights_name).DEFAULT
            missing = load_matching(model, load_torchvision_state(enum))
            note = f"pretrained {enum}"
            if missing:
                note += f"; random: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}"
            model.segedge_weights_note = note  # type: ignore[assignment]
        return model.eval()

    return build


maskrcnn_resnet50_fpn = _torchvision_maskrcnn("maskrcnn_resnet50_fpn",
                                              "MaskRCNN_ResNet50_FPN_Weights")
maskrcnn_resnet50_fpn_v2 = _torchvision_maskrcnn("maskrcnn_resnet50_fpn_v2",
                                                 "MaskRCNN_ResNet50_FPN_V2_Weights")


def maskrcnn_mobilenet(num_classes: int, size: tuple[int, int] = (192, 256)) -> nn.Module:
    """A light Mask R-CNN (MobileNetV3-Large FPN, no pretrained backbone) for small images.

    The transform's min/max size equal `size`, so frames of that size are not
    rescaled inside the graph.  Used for the trained instance demo and tests.
    """
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import mobilenet_backbone

    backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True,
                                  trainable_layers=6)
    sizes = ((16, 32, 64, 128),) * 3
    ratios = ((0.5, 1.0, 2.0),) * 3
    model = MaskRCNN(backbone, num_classes=num_classes, min_size=min(size), max_size=max(size),
                     rpn_anchor_generator=AnchorGenerator(sizes, ratios),
                     rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
                     box_detections_per_img=DEFAULT_MAX_DETECTIONS)
    return model.eval()
