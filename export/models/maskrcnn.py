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

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from segedge.export.models.registry import BuildRequest
from segedge.export.models.weights import Weights
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
        if self.uint8:  # cast first: TensorRT takes UINT8 only at the network boundary
            img = x.float()[0].permute(2, 0, 1) / 255.0
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
    # Pad in float and cast last: TensorRT takes UINT8 only as a network output.
    masks = _pad_rows((masks[:, 0] > mask_threshold).to(torch.float32), n)
    count = torch.clamp(torch.ones_like(det["scores"]).sum(), max=float(n))  # float Clip: TRT
    return (boxes.unsqueeze(0), labels.unsqueeze(0), scores.unsqueeze(0),
            masks.unsqueeze(0).to(torch.uint8), count.to(torch.int64).reshape(1))


# --- builders ---------------------------------------------------------------------------

def torchvision_maskrcnn(factory: str, weights: Weights) -> Callable[[BuildRequest], nn.Module]:
    """Builder for `torchvision.models.detection.<factory>`; 'pretrained' loads `weights`."""

    def build(req: BuildRequest) -> nn.Module:
        from torchvision.models import detection

        model: nn.Module = getattr(detection, factory)(weights=None, weights_backbone=None,
                                                       num_classes=req.num_classes)
        if req.weights == "pretrained":
            weights.load_noted(model, list_at_most=6)
        return model.eval()

    return build


def maskrcnn_mobilenet(num_classes: int, size: tuple[int, int] = (192, 256),
                      norm: str = "batch", channels: int = 64) -> nn.Module:
    """A light Mask R-CNN for small images: MobileNetV3-Large trunk, a 64-channel FPN on
    strides 8/16/32, slim box and mask heads.  No pretrained backbone (none offline).

    The transform's min/max size equal `size`, so frames of that size are not
    rescaled inside the graph.  ``norm="batch"`` trains the batch norms (needed
    from scratch); the eval graph is the same either way.  About 8x cheaper per
    training step than torchvision's 256-channel heads on two CPU cores.
    """
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import misc as misc_nn_ops

    norm_layer = nn.BatchNorm2d if norm == "batch" else misc_nn_ops.FrozenBatchNorm2d
    features = mobilenet_v3_large(weights=None, norm_layer=norm_layer).features
    stages = [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
    picks = stages[-2:] + [len(features) - 1]  # strides 8, 16, 32
    backbone = BackboneWithFPN(features, {str(k): str(v) for v, k in enumerate(picks)},
                               [features[k].out_channels for k in picks], channels)
    anchors = AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4)
    rep = 256
    model = MaskRCNN(
        backbone, num_classes=None, min_size=min(size), max_size=max(size),
        rpn_anchor_generator=anchors, rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100, rpn_batch_size_per_image=128,
        box_batch_size_per_image=128, box_detections_per_img=DEFAULT_MAX_DETECTIONS,
        box_head=TwoMLPHead(channels * 7 * 7, rep),
        box_predictor=FastRCNNPredictor(rep, num_classes),
        mask_head=MaskRCNNHeads(channels, (channels, channels), 1),
        mask_predictor=MaskRCNNPredictor(channels, channels, num_classes),
    )
    return model.eval()
