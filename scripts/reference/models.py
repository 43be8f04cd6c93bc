"""PyTorch twins of facerec's backbones, with the same parameter names, so that facerec's
safetensors load with `load_state_dict(strict=True)` and the same computation can be timed in
PyTorch-in-Python. Used by scripts/reference/check_interop.py and scripts/bench_train.py.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


def caffe_xavier_(t, fan_in):
    bound = (3.0 / fan_in) ** 0.5
    with torch.no_grad():
        t.uniform_(-bound, bound)


class LenetPP(nn.Module):
    """LeNets++ (Wen et al. 2016, Sec. 3.1): three stages of two 5x5 convs + PReLU, 2x2 max
    pool (caffe ceil mode), then fc to a 2-D feature + PReLU."""

    def __init__(self, feature_dim=2, in_channels=1, input_size=28):
        super().__init__()
        chans = [(in_channels, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
        for k, (ci, co) in enumerate(chans):
            stage, j = k // 2 + 1, k % 2 + 1
            setattr(self, f"conv{stage}_{j}", nn.Conv2d(ci, co, 5, padding=2))
            setattr(self, f"prelu{stage}_{j}", nn.PReLU(co, init=0.25))
        side = input_size
        for _ in range(3):
            side = (side + 1) // 2
        self.fc = nn.Linear(128 * side * side, feature_dim)
        self.prelu_fc = nn.PReLU(feature_dim, init=0.25)

    def forward(self, x):
        for stage in (1, 2, 3):
            for j in (1, 2):
                x = getattr(self, f"prelu{stage}_{j}")(getattr(self, f"conv{stage}_{j}")(x))
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        return self.prelu_fc(self.fc(x.flatten(1)))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.prelu1 = nn.PReLU(c, init=0.25)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.prelu2 = nn.PReLU(c, init=0.25)

    def forward(self, x):
        return x + self.prelu2(self.conv2(self.prelu1(self.conv1(x))))


def _final_side(side):
    s = side - 4
    for stage in range(4):
        if stage > 0:
            s -= 2
        s = (s + 1) // 2
    return s


class FaceResNet(nn.Module):
    """caffe-face's Face-ResNet (Wen et al. 2016, Fig. 4), scaled by widths/blocks."""

    def __init__(self, widths=(32, 64, 128, 256, 512), blocks=(1, 2, 5, 3), feature_dim=512, input_shape=(3, 112, 96)):
        super().__init__()
        w = widths
        self.conv1a, self.prelu1a = nn.Conv2d(input_shape[0], w[0], 3), nn.PReLU(w[0], init=0.25)
        self.conv1b, self.prelu1b = nn.Conv2d(w[0], w[1], 3), nn.PReLU(w[1], init=0.25)
        self.layer1 = nn.Sequential(*[ResBlock(w[1]) for _ in range(blocks[0])])
        self.conv2, self.prelu2 = nn.Conv2d(w[1], w[2], 3), nn.PReLU(w[2], init=0.25)
        self.layer2 = nn.Sequential(*[ResBlock(w[2]) for _ in range(blocks[1])])
        self.conv3, self.prelu3 = nn.Conv2d(w[2], w[3], 3), nn.PReLU(w[3], init=0.25)
        self.layer3 = nn.Sequential(*[ResBlock(w[3]) for _ in range(blocks[2])])
        self.conv4, self.prelu4 = nn.Conv2d(w[3], w[4], 3), nn.PReLU(w[4], init=0.25)
        self.layer4 = nn.Sequential(*[ResBlock(w[4]) for _ in range(blocks[3])])
        self.fc5 = nn.Linear(w[4] * _final_side(input_shape[1]) * _final_side(input_shape[2]), feature_dim)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                caffe_xavier_(m.weight, m.weight[0].numel())
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        pool = lambda t: F.max_pool2d(t, 2, 2, ceil_mode=True)
        x = pool(self.prelu1b(self.conv1b(self.prelu1a(self.conv1a(x)))))
        x = self.layer1(x)
        x = self.layer2(pool(self.prelu2(self.conv2(x))))
        x = self.layer3(pool(self.prelu3(self.conv3(x))))
        x = self.layer4(pool(self.prelu4(self.conv4(x))))
        return self.fc5(x.flatten(1))


class ConvBlock(nn.Module):
    """MobileFaceNet's conv + BN (+ PReLU), as `MobileFaceNet_Pytorch/core/model.py` writes it."""

    def __init__(self, inp, oup, k, s, p, dw=False, linear=False):
        super().__init__()
        self.linear = linear
        self.conv = nn.Conv2d(inp, oup, k, s, p, groups=inp if dw else 1, bias=False)
        self.bn = nn.BatchNorm2d(oup)
        if not linear:
            self.prelu = nn.PReLU(oup)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return x if self.linear else self.prelu(x)


class Bottleneck(nn.Module):
    def __init__(self, inp, oup, stride, expansion):
        super().__init__()
        self.connect = stride == 1 and inp == oup
        e = inp * expansion
        self.conv = nn.Sequential(
            nn.Conv2d(inp, e, 1, 1, 0, bias=False), nn.BatchNorm2d(e), nn.PReLU(e),
            nn.Conv2d(e, e, 3, stride, 1, groups=e, bias=False), nn.BatchNorm2d(e), nn.PReLU(e),
            nn.Conv2d(e, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        return x + self.conv(x) if self.connect else self.conv(x)


class MobileFaceNet(nn.Module):
    """MobileFaceNet (Chen et al. 2018), the layout of the public PyTorch re-implementation
    (MobileFaceNet_Pytorch, core/model.py) that the shared CASIA-WebFace checkpoint comes from."""

    SETTING = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]

    def __init__(self, input_size=(112, 96), feature_dim=128):
        super().__init__()
        self.conv1 = ConvBlock(3, 64, 3, 2, 1)
        self.dw_conv1 = ConvBlock(64, 64, 3, 1, 1, dw=True)
        blocks, inp = [], 64
        for t, c, n, s in self.SETTING:
            for i in range(n):
                blocks.append(Bottleneck(inp, c, s if i == 0 else 1, t))
                inp = c
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = ConvBlock(128, 512, 1, 1, 0)
        self.linear7 = ConvBlock(512, 512, (input_size[0] // 16, input_size[1] // 16), 1, 0, dw=True, linear=True)
        self.linear1 = ConvBlock(512, feature_dim, 1, 1, 0, linear=True)

    def forward(self, x):
        x = self.blocks(self.dw_conv1(self.conv1(x)))
        x = self.linear1(self.linear7(self.conv2(x)))
        return x.view(x.size(0), -1)


def build(config):
    """A model from facerec's backbone config (the JSON in model.safetensors' metadata)."""
    name = config["name"]
    args = {k: v for k, v in config.items() if k != "name"}
    if name == "lenet_pp":
        return LenetPP(**args)
    if name == "face_resnet":
        return FaceResNet(**args)
    if name == "mobilefacenet":
        return MobileFaceNet(**args)
    raise SystemExit(f"no PyTorch twin for backbone {name!r}")
