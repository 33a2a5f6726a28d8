"""The student's decoder: top-down fusion of ViT features, detail branch, mixer and heads.

Shapes for a 518×518 input and DINOv2 ViT-S/14 (grid 37×37, embed 384):

- laterals: each feature map, 1×1 conv 384→256 + BN + ReLU (37×37);
- top-down fusion from the deepest map: ``f = y + lateral``, ``y = ReLU(f + B(f))`` with
  ``B`` = Conv3×3–BN–ReLU–Conv3×3–BN;
- three PixelShuffle ×2 stages 256→128→64→32 (296×296), resized to the detail grid (130×130);
- detail branch on the RGB input: Conv3×3 s2 3→24 + BN + ReLU, Conv3×3 s2 24→32 + BN + ReLU;
- mixer: concat (32 + 32) → Conv3×3 64 + BN + ReLU;
- heads (binary: 2 outputs, fine: C outputs): Upsample ×2, Conv3×3 64→32 + BN + ReLU,
  Upsample ×2, Conv1×1; logits resized to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU with 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResidualFusion(nn.Module):
    """``y = ReLU(f + B(f))`` with ``B`` = Conv3×3–BN–ReLU–Conv3×3–BN."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Residual refinement of the fused map ``f``."""
        return F.relu(f + self.block(f))


class PixelShuffleUp(nn.Module):
    """×2 learned upsampling: Conv3×3 to 4·c_out, PixelShuffle(2), BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4 * out_channels, 3, padding=1, bias=False)
        self.shuffle = nn.PixelShuffle(2)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` (N×c_in×h×w) to N×c_out×2h×2w."""
        return F.relu(self.bn(self.shuffle(self.conv(x))))


class DetailBranch(nn.Module):
    """Two stride-2 Conv3×3–BN–ReLU blocks on the RGB input: 3→24→32 channels at H/4."""

    def __init__(self, channels: tuple[int, int] = (24, 32)) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            conv_bn_relu(3, channels[0], 3, stride=2),
            conv_bn_relu(channels[0], channels[1], 3, stride=2),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Detail features of the normalised image."""
        return self.layers(image)


class SegmentationHead(nn.Module):
    """Upsample ×2, Conv3×3 c_in→32 + BN + ReLU, Upsample ×2, Conv1×1 32→``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.conv = conv_bn_relu(in_channels, hidden, 3)
        self.classifier = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits at 4× the resolution of ``x``.

        The 1×1 classifier runs before the second bilinear ×2 upsample: both are linear and
        the bilinear weights of each output pixel sum to one, so the result is the same as
        classifying after upsampling, with ``hidden / out_channels`` times less work.
        """
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = self.classifier(self.conv(x))
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def detail_grid(height: int, width: int) -> tuple[int, int]:
    """Output size of two stride-2, padding-1, 3×3 convolutions (the H/4 grid)."""

    def half(n: int) -> int:
        return (n + 1) // 2

    return half(half(height)), half(half(width))


class Decoder(nn.Module):
    """Hierarchical decoder of the Boxes2Pixels student.

    Args:
        in_channels: channels of each backbone feature map (384 for ViT-S).
        num_features: number of feature maps (4 in the paper).
        num_classes: outputs of the fine head (background + defect classes).
        channels: width of laterals and fusion blocks (256).
        detail_branch: add the CNN detail branch (ablation switch).
        binary_head: add the binary defect head (ablation switch).
    """

    def __init__(
        self,
        in_channels: int,
        num_features: int,
        num_classes: int,
        channels: int = 256,
        detail_branch: bool = True,
        binary_head: bool = True,
    ) -> None:
        super().__init__()
        if num_features < 1:
            raise ConfigError("the decoder needs at least one feature map")
        if channels % 8:
            raise ConfigError(f"decoder channels must be a multiple of 8 (got {channels})")
        self.laterals = nn.ModuleList(
            conv_bn_relu(in_channels, channels, 1) for _ in range(num_features)
        )
        # fusion[i] merges the running map with lateral i (shallower than the previous one)
        self.fusion = nn.ModuleList(ResidualFusion(channels) for _ in range(num_features - 1))
        self.upsample = nn.Sequential(
            PixelShuffleUp(channels, channels // 2),
            PixelShuffleUp(channels // 2, channels // 4),
            PixelShuffleUp(channels // 4, channels // 8),
        )
        semantic_out = channels // 8
        self.detail = DetailBranch() if detail_branch else None
        detail_out = 32 if detail_branch else 0
        self.mixer = conv_bn_relu(semantic_out + detail_out, 64, 3)
        self.fine_head = SegmentationHead(64, num_classes)
        self.binary_head = SegmentationHead(64, 2) if binary_head else None

    @property
    def heads(self) -> tuple[str, ...]:
        """Names of the output heads: ``("fine",)`` or ``("fine", "binary")``."""
        return ("fine",) if self.binary_head is None else ("fine", "binary")

    def forward(
        self,
        features: list[torch.Tensor],
        image: torch.Tensor,
        heads: Sequence[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Decode feature maps (shallow to deep) and the normalised image into logits.

        Args:
            features: backbone feature maps, shallow to deep.
            image: the normalised input batch (for the detail branch and the output size).
            heads: heads to compute (default: all); inference needs only ``("fine",)``.

        Returns:
            ``{"fine": N×C×H×W}`` plus ``"binary"`` (N×2×H×W) when asked for and present.
        """
        heads = self.heads if heads is None else tuple(heads)
        unknown = set(heads) - set(self.heads)
        if unknown:
            raise ConfigError(f"unknown or disabled head(s) {sorted(unknown)}; have {self.heads}")
        if len(features) != len(self.laterals):
            raise ConfigError(f"expected {len(self.laterals)} feature maps, got {len(features)}")
        height, width = image.shape[-2:]
        laterals = [lateral(f) for lateral, f in zip(self.laterals, features, strict=True)]
        y = laterals[-1]
        for i in range(len(laterals) - 2, -1, -1):
            y = self.fusion[i](y + laterals[i])
        semantic = self.upsample(y)
        grid = detail_grid(height, width)
        semantic = F.interpolate(semantic, size=grid, mode="bilinear", align_corners=False)
        if self.detail is not None:
            mixed = self.mixer(torch.cat([semantic, self.detail(image)], dim=1))
        else:
            mixed = self.mixer(semantic)
        out = {}
        if "fine" in heads:
            out["fine"] = self._to_input_size(self.fine_head(mixed), (height, width))
        if "binary" in heads and self.binary_head is not None:
            out["binary"] = self._to_input_size(self.binary_head(mixed), (height, width))
        return out

    @staticmethod
    def _to_input_size(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # Always resized (an exact copy when the sizes already match): a shape test here would
        # be frozen into exported graphs, which then break for inputs of other sizes.
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
