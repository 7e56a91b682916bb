"""Small, randomly initialised library models saved the way each library saves them.

No hub access: every model is built from a configuration in code (or a YAML the
package ships) and written with the library's own save call, so the front-ends
read exactly what a user's training run leaves behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

import torch

SIZE = 64  # every fixture is exported at SIZE x SIZE
NAMES = ("road", "car", "sky", "tree")
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def settle_batchnorm(model: torch.nn.Module, mean: list[float], std: list[float],
                     call: Any = None) -> torch.nn.Module:
    """BatchNorm statistics from generated road scenes (the network's own preprocessing):
    random convolutions then give activations of a trained network's scale, not a near-constant
    map, so argmax, FP16 and INT8 are tested on real decisions (weights stay random)."""
    import numpy as np

    from segedge.export import scenes

    frames = np.stack(scenes.frames(8, (SIZE, SIZE), seed=11))[..., ::-1]  # BGR -> RGB
    x = torch.from_numpy(frames.copy()).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over the pass
    model.train()
    with torch.no_grad():
        (call or model)(x)
    return model.eval()


# Generated scenes' seven classes folded into NAMES (road, car, sky, tree) for brief training.
_FOLD = (2, 3, 3, 0, 0, 0, 1)  # sky, building->tree, tree, road, lane->road, sidewalk->road, car
TRAIN_SCENES = 16


def scene_batch(count: int, seed: int, mean: list[float], std: list[float]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` generated scenes at SIZE x SIZE: (normalised RGB N3HW, NAMES labels NHW)."""
    import numpy as np

    from segedge.export import scenes

    pairs = [scenes.sample(seed + i, (SIZE, SIZE)) for i in range(count)]
    rgb = np.stack([img for img, _ in pairs])[..., ::-1].copy()
    labels = np.asarray(_FOLD, np.int64)[np.stack([lab for _, lab in pairs])]
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x, torch.from_numpy(labels)


def train_briefly(model: torch.nn.Module, mean: list[float], std: list[float],
                  call: Any = None, steps: int = 20, lr: float = 5e-3) -> torch.nn.Module:
    """`steps` AdamW steps on labelled generated scenes (batches of 4 from seed 1000 on, never
    the verification or calibration frames): random logits are flat (DPT's spread is ~1e-5),
    so FP16/INT8 rounding flips their argmax; after this the winning class leads by a margin
    (median > 2 logits, ~89 % pixel accuracy on held-out scenes), as in a trained network.
    The caller settles BatchNorm afterwards; the model is left in train mode.  One thread:
    these steps are too small to gain from two, and on a busy 2-core machine two threads
    spinning at each barrier cost 15x the CPU (yolo: 32 s against 2 s, measured)."""
    import torch.nn.functional as F

    x, y = scene_batch(TRAIN_SCENES, 1000, mean, std)
    forward = call or model
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    losses: list[float] = []
    try:
        for step in range(steps):
            pick = [(step * 4 + k) % TRAIN_SCENES for k in range(4)]
            out = forward(x[pick])
            logits = out[0] if isinstance(out, (tuple, list)) else out
            logits = F.interpolate(logits, size=(SIZE, SIZE), mode="bilinear",
                                   align_corners=False)
            loss = F.cross_entropy(logits, y[pick])
            losses.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    # Measured: 1.4 -> 0.25 (yolo, 20 steps), 1.39 -> 0.47 (DPT, 15), 1.74 -> 0.25 (LR-ASPP, 12).
    assert not losses or losses[-1] < 0.5 * losses[0], f"training did not learn: {losses}"
    return model


def smp_folder(folder: Path, encoder_weights: str | None = "imagenet") -> Path:
    """An SMP Unet on a tiny timm encoder, written by save_pretrained (config records
    encoder_weights as a training run would; the folder holds every weight)."""
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    model = smp.Unet(**smp_args(), encoder_weights=None, classes=len(NAMES))
    settle_batchnorm(model, *IMAGENET)
    model.save_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text())
    config["encoder_weights"] = encoder_weights
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def smp_args() -> dict[str, object]:
    return {"encoder_name": "tu-mobilenetv3_small_050", "decoder_channels": (32, 16, 16, 8, 8)}


def segformer_b0(folder: Path) -> Path:
    """SegFormer-B0's shape (transformers' default SegformerConfig), random init, 4 labels,
    an image processor at SIZE x SIZE with Cityscapes-like reduce_labels off."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    config = SegformerConfig(**_labels())
    assert list(config.hidden_sizes) == [32, 64, 160, 256] and list(config.depths) == [2] * 4
    return _save_hf(SegformerForSemanticSegmentation(config), folder, "SegformerImageProcessor",
                    *IMAGENET)


def upernet(folder: Path) -> Path:
    """UperNet on a tiny ConvNeXt backbone (no pretrained backbone is fetched)."""
    from transformers import ConvNextConfig, UperNetConfig, UperNetForSemanticSegmentation

    torch.manual_seed(0)
    stages: dict[str, Any] = {"out_features": ["stage1", "stage2", "stage3", "stage4"]}
    backbone = ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], **stages)
    config = UperNetConfig(backbone_config=backbone, hidden_size=32, auxiliary_in_channels=64,
                           use_auxiliary_head=False, **_labels())
    return _save_hf(UperNetForSemanticSegmentation(config), folder, "SegformerImageProcessor",
                    *IMAGENET)


def dpt(folder: Path, steps: int = 0) -> Path:
    """DPT (ViT, patch 16) with a semantic head; the image processor normalises to -1..1.
    `steps` > 0 trains it briefly (train_briefly) before it is saved."""
    from transformers import DPTConfig, DPTForSemanticSegmentation

    torch.manual_seed(0)
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                       intermediate_size=64, image_size=SIZE, patch_size=16,
                       neck_hidden_sizes=[16, 32, 64, 64], fusion_hidden_size=32,
                       backbone_out_indices=[0, 1, 2, 3], use_auxiliary_head=False,
                       **_labels())
    model = DPTForSemanticSegmentation(config)
    if steps:
        train_briefly(model, [0.5] * 3, [0.5] * 3, lambda x: model(pixel_values=x).logits,
                      steps)
    return _save_hf(model, folder, "DPTImageProcessor", [0.5] * 3, [0.5] * 3)


def _labels() -> dict[str, Any]:
    """A transformers config's class list: NAMES, both ways."""
    return {"num_labels": len(NAMES), "id2label": dict(enumerate(NAMES)),
            "label2id": {n: i for i, n in enumerate(NAMES)}}


def _save_hf(model: torch.nn.Module, folder: Path, processor: str, mean: list[float],
             std: list[float]) -> Path:
    """Settle BatchNorm under the model's normalisation, then save it as a training run
    would: save_pretrained plus an image processor at SIZE x SIZE (reduce_labels off)."""
    import transformers

    settle_batchnorm(model, mean, std, lambda x: model(pixel_values=x))
    cast(Any, model).save_pretrained(str(folder))  # a transformers PreTrainedModel
    getattr(transformers, processor)(size={"height": SIZE, "width": SIZE}, image_mean=mean,
                                     image_std=std, do_reduce_labels=False
                                     ).save_pretrained(str(folder))
    return folder


def yolo_checkpoint(path: Path, imgsz: int = SIZE, steps: int = 0) -> Path:
    """A YOLO26n-sem network (the YAML ultralytics ships), random init (`steps` > 0: trained
    briefly), saved as its trainer saves best.pt: the FP16 EMA network with names,
    train_args beside it."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from ultralytics.nn.tasks import SemanticSegmentationModel

    torch.manual_seed(0)
    model = SemanticSegmentationModel("yolo26n-sem.yaml", nc=len(NAMES), verbose=False)
    model.names = dict(enumerate(NAMES))
    if steps:
        train_briefly(model, [0.0] * 3, [1.0] * 3, None, steps)  # main head; aux left out
    settle_batchnorm(model, [0.0] * 3, [1.0] * 3)  # Ultralytics feeds 0..1 RGB
    torch.save({"epoch": -1, "best_fitness": None, "model": None, "ema": model.half(),
                "updates": 0, "optimizer": None,
                "train_args": {"task": "semantic", "imgsz": imgsz, "data": "road.yaml"},
                "version": "8.4.190"}, path)
    return path


def tv_checkpoint(path: Path, classes: int = 5, steps: int = 0) -> Path:
    """LR-ASPP MobileNetV3 with `classes` outputs (`steps` > 0: trained briefly on NAMES,
    so classes >= 4), saved as torchvision's reference scripts do ({"model": state_dict,
    ...}; their argparse args left out)."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model("lraspp_mobilenet_v3_large", weights=None,
                                         weights_backbone=None, num_classes=classes)
    if steps:
        train_briefly(model, *IMAGENET, lambda x: model(x)["out"], steps)
    settle_batchnorm(model, *IMAGENET, lambda x: model(x)["out"])
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    return path
