"""The PyTorch model zoo: small, untrained (seeded random weights) time-series models.

Pure PyTorch, no exporter imports: `generate_torch.py` imports this in the litert-torch venv
(litert-torch export and ONNX export). Every model is built by `build(name)`, which seeds torch
first, so weights are the same on every run.

Frames: T = 49 frames (the window) of F features; F is 40 for the Conv1d models, 10 for the 2-D
conv models, 20 for the GRU (whose window is T_GRU = 32 frames). Each entry of MODELS gives the
input shape in PyTorch's layout.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

T = 49          # window: frames on the time axis
N_CLASSES = 12  # keyword classes
T_GRU = 32      # the GRU's window: litert-torch unrolls it (~25 ops, ~3.3 KB per frame), so 49
                # frames would not fit the 150 KB budget


def _randomize_bn(module, gen):
    """Give every BatchNorm non-trivial running stats and affine params (eval mode folds them)."""
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
                m.weight.copy_(0.75 + 0.5 * torch.rand(m.num_features, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.num_features, generator=gen))


# 1. ------------------------------------------------------------------------------------------
class Tdnn(nn.Module):
    """VALID Conv1d stack on [1, F, T]: k3 d1, k5 d2, k3 d1; flatten + Linear."""

    def __init__(self, feats=40):
        super().__init__()
        self.c1 = nn.Conv1d(feats, 32, 3)
        self.c2 = nn.Conv1d(32, 32, 5, dilation=2)
        self.c3 = nn.Conv1d(32, 16, 3)
        t = T - 2 - 8 - 2
        self.fc = nn.Linear(16 * t, N_CLASSES)

    def forward(self, x):                      # x: [1, F, T]
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x))
        x = F.relu(self.c3(x))
        return self.fc(torch.flatten(x, 1))


# 2. ------------------------------------------------------------------------------------------
class TdnnSame(nn.Module):
    """SAME-like Conv1d (padding=k//2, and d*(k-1)//2 when dilated): k3, k5, k3 d2; mean(-1) + Linear."""

    def __init__(self, feats=40):
        super().__init__()
        self.c1 = nn.Conv1d(feats, 32, 3, padding=1)
        self.c2 = nn.Conv1d(32, 32, 5, padding=2)
        self.c3 = nn.Conv1d(32, 32, 3, padding=2, dilation=2)
        self.fc = nn.Linear(32, N_CLASSES)

    def forward(self, x):                      # x: [1, F, T]
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x))
        x = F.relu(self.c3(x))
        return self.fc(x.mean(-1))


# 3. ------------------------------------------------------------------------------------------
class TcResBlock(nn.Module):
    def __init__(self, cin, cout, k=7, stride=2):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, k, padding=k // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.short = nn.Sequential(nn.Conv1d(cin, cout, 1, stride=stride, bias=False),
                                   nn.BatchNorm1d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.short(x))


class TcResNet(nn.Module):
    """TC-ResNet8-like: Conv1d k3 (pad 1), 3 residual blocks (k7 stride 2 pad 3 / k7 pad 3, 1x1
    stride-2 shortcut, BatchNorm), mean over time + Linear."""

    def __init__(self, feats=40):
        super().__init__()
        self.stem = nn.Conv1d(feats, 12, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(TcResBlock(12, 16), TcResBlock(16, 24), TcResBlock(24, 32))
        self.fc = nn.Linear(32, N_CLASSES)

    def forward(self, x):                      # x: [1, F, T]
        x = self.blocks(self.stem(x))
        return self.fc(x.mean(-1))


# 4. ------------------------------------------------------------------------------------------
class DsCnn2d(nn.Module):
    """DS-CNN on [1, 1, T, F] (F=10): Conv2d (3,3) stride 2 VALID, depthwise 3x3 VALID + 1x1
    pointwise (BatchNorm), flatten + Linear."""

    def __init__(self, feats=10):
        super().__init__()
        self.c1 = nn.Conv2d(1, 16, 3, stride=2)                     # [1,16,24,4]
        self.dw = nn.Conv2d(16, 16, 3, groups=16)                   # [1,16,22,2]
        self.bn = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 16, 1)
        t = (T - 3) // 2 + 1 - 2
        f = (feats - 3) // 2 + 1 - 2
        self.fc = nn.Linear(16 * t * f, N_CLASSES)

    def forward(self, x):                      # x: [1, 1, T, F]
        x = F.relu(self.c1(x))
        x = F.relu(self.bn(self.dw(x)))
        x = F.relu(self.pw(x))
        return self.fc(torch.flatten(x, 1))


# 5. ------------------------------------------------------------------------------------------
class TcnFpad(nn.Module):
    """Causal TCN: F.pad(x, ((k-1)*d, 0)) then VALID Conv1d k3, dilations 1, 2, 4; head x[:, :, -1]."""

    def __init__(self, feats=40, k=3):
        super().__init__()
        self.k = k
        self.dil = (1, 2, 4)
        chans = (feats, 32, 32, 32)
        self.convs = nn.ModuleList(
            nn.Conv1d(chans[i], chans[i + 1], k, dilation=d) for i, d in enumerate(self.dil))
        self.fc = nn.Linear(32, N_CLASSES)

    def forward(self, x):                      # x: [1, F, T]
        for conv, d in zip(self.convs, self.dil):
            x = F.relu(conv(F.pad(x, ((self.k - 1) * d, 0))))
        return self.fc(x[:, :, -1])


# 6. ------------------------------------------------------------------------------------------
class Chomp1d(nn.Module):
    """locuslab/TCN's Chomp1d: drop the last `chomp` frames."""

    def __init__(self, chomp):
        super().__init__()
        self.chomp = chomp

    def forward(self, x):
        return x[:, :, :-self.chomp].contiguous()


class TemporalBlock(nn.Module):
    """locuslab/TCN's TemporalBlock (without weight_norm / dropout, which are training-only)."""

    def __init__(self, cin, cout, k, d):
        super().__init__()
        p = (k - 1) * d
        self.conv1 = nn.Conv1d(cin, cout, k, padding=p, dilation=d)
        self.chomp1 = Chomp1d(p)
        self.conv2 = nn.Conv1d(cout, cout, k, padding=p, dilation=d)
        self.chomp2 = Chomp1d(p)
        self.down = nn.Conv1d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        y = F.relu(self.chomp1(self.conv1(x)))
        y = F.relu(self.chomp2(self.conv2(y)))
        res = x if self.down is None else self.down(x)
        return F.relu(y + res)


class TcnChomp(nn.Module):
    """locuslab TCN: 2 TemporalBlocks (k3, d1 and d2; Conv1d(padding=(k-1)d) + Chomp1d), head x[:, :, -1]."""

    def __init__(self, feats=40):
        super().__init__()
        self.tcn = nn.Sequential(TemporalBlock(feats, 24, 3, 1), TemporalBlock(24, 24, 3, 2))
        self.fc = nn.Linear(24, N_CLASSES)

    def forward(self, x):                      # x: [1, F, T]
        return self.fc(self.tcn(x)[:, :, -1])


# 7. ------------------------------------------------------------------------------------------
class PerFrameLinear(nn.Module):
    """Time-first [1, T, F]: Linear per frame + LayerNorm + ReLU, transpose to [1, C, T], VALID
    Conv1d k3, mean over time, Linear."""

    def __init__(self, feats=40):
        super().__init__()
        self.proj = nn.Linear(feats, 32)
        self.norm = nn.LayerNorm(32)
        self.conv = nn.Conv1d(32, 32, 3)
        self.fc = nn.Linear(32, N_CLASSES)

    def forward(self, x):                      # x: [1, T, F]
        x = F.relu(self.norm(self.proj(x)))
        x = F.relu(self.conv(x.transpose(1, 2)))
        return self.fc(x.mean(-1))


# 8. ------------------------------------------------------------------------------------------
class TimeLastInput(nn.Module):
    """Native PyTorch layout [1, F, T] straight into a VALID Conv1d k5; then time moves to axis 1
    (transpose) for a per-frame Linear, max over time, Linear."""

    def __init__(self, feats=40):
        super().__init__()
        self.conv = nn.Conv1d(feats, 32, 5)
        self.frame = nn.Linear(32, 24)
        self.fc = nn.Linear(24, N_CLASSES)

    def forward(self, x):                      # x: [1, F, T]
        x = F.relu(self.conv(x))               # [1, 32, T-4]
        x = F.relu(self.frame(x.transpose(1, 2)))   # [1, T-4, 24]
        return self.fc(x.amax(1))


# 9. ------------------------------------------------------------------------------------------
class Gru(nn.Module):
    """nn.GRU(batch_first=True) over [1, T_GRU, F] (T_GRU=32, F=20, hidden 32), Linear on the last step."""

    def __init__(self, feats=20):
        super().__init__()
        self.gru = nn.GRU(feats, 32, batch_first=True)
        self.fc = nn.Linear(32, N_CLASSES)

    def forward(self, x):                      # x: [1, T, F]
        y, _ = self.gru(x)
        return self.fc(y[:, -1])


# 10. -----------------------------------------------------------------------------------------
class FlatInput(nn.Module):
    """Flat [1, T*F] (F=10) reshaped inside to [1, 1, T, F]; Conv2d (5,3) and (3,3) VALID,
    MaxPool2d 2x2, global mean, Linear."""

    def __init__(self, feats=10):
        super().__init__()
        self.feats = feats
        self.c1 = nn.Conv2d(1, 16, (5, 3))     # [1,16,45,8]
        self.c2 = nn.Conv2d(16, 16, 3)         # [1,16,43,6]
        self.fc = nn.Linear(16, N_CLASSES)

    def forward(self, x):                      # x: [1, T*F]
        x = x.reshape(1, 1, T, self.feats)
        x = F.relu(self.c1(x))
        x = F.relu(self.c2(x))
        x = F.max_pool2d(x, 2)                 # [1,16,21,3]
        return self.fc(x.mean((2, 3)))


# 11. -----------------------------------------------------------------------------------------
class ChannelMatmul(nn.Module):
    """[1, F, T] -> torch.matmul(W, x) + b[:, None]: a per-frame Linear written as a matmul with the
    constant weight on the LEFT of the [1, C, T] tensor (onnx2tf: BATCH_MATMUL with a constant
    left-hand side); then VALID Conv1d k3, mean over time, Linear."""

    def __init__(self, feats=40):
        super().__init__()
        self.w = nn.Parameter(torch.randn(32, feats) / feats ** 0.5)
        self.b = nn.Parameter(torch.zeros(32))
        self.conv = nn.Conv1d(32, 32, 3)
        self.fc = nn.Linear(32, N_CLASSES)

    def forward(self, x):                      # x: [1, F, T]
        x = F.relu(torch.matmul(self.w, x) + self.b[:, None])     # [1, 32, T]
        x = F.relu(self.conv(x))
        return self.fc(x.mean(-1))


# name -> (class, input shape in PyTorch layout, seed)
MODELS = {
    "tdnn": (Tdnn, (1, 40, T), 1),
    "tdnn_same": (TdnnSame, (1, 40, T), 2),
    "tc_resnet": (TcResNet, (1, 40, T), 3),
    "ds_cnn2d": (DsCnn2d, (1, 1, T, 10), 4),
    "tcn_fpad": (TcnFpad, (1, 40, T), 5),
    "tcn_chomp": (TcnChomp, (1, 40, T), 6),
    "per_frame_linear": (PerFrameLinear, (1, T, 40), 7),
    "time_last_input": (TimeLastInput, (1, 40, T), 8),
    "gru": (Gru, (1, T_GRU, 20), 9),
    "flat_input": (FlatInput, (1, T * 10), 10),
    "channel_matmul": (ChannelMatmul, (1, 40, T), 11),
}


def build(name):
    """The seeded, eval-mode model and its input shape (PyTorch layout)."""
    cls, shape, seed = MODELS[name]
    torch.manual_seed(seed)
    model = cls()
    gen = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():                      # non-trivial biases, as in the Keras zoo
        for n, p in model.named_parameters():
            if (n.endswith("bias") or n == "b") and "bn" not in n and "norm" not in n and p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    _randomize_bn(model, gen)
    return model.eval(), shape


def calibration(shape, n=64, seed=1234):
    """Seeded N(0, 1) representative inputs, [n, *shape[1:]] in PyTorch layout."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn((n,) + tuple(shape[1:]), generator=gen)
