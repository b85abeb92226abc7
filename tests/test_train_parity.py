"""20 SGD-momentum training steps from the same initial weights: nnlite's losses follow
PyTorch's within 1e-4 relative (issue #17). A small CNN with every op of the training fast
paths: 3x3 convs (strided, padded, grouped), BatchNorm (train mode), ReLU, max pool, 1x1 conv,
depthwise 3x3, adaptive average pool, linear, cross-entropy. Skips without torch."""
import numpy as np
import pytest

import nnlite
import nnlite.nn as nn
import nnlite.nn.functional as F

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _layers(lib):
    return [lib.Conv2d(3, 8, 3, padding=1, bias=False), lib.BatchNorm2d(8), lib.ReLU(),
            lib.Conv2d(8, 12, (3, 2), stride=(2, 1), padding=(1, 0), groups=2),
            lib.BatchNorm2d(12), lib.ReLU(), lib.MaxPool2d(2),
            lib.Conv2d(12, 16, 1), lib.Conv2d(16, 16, 3, padding=1, groups=16),
            lib.BatchNorm2d(16), lib.ReLU(),
            lib.AdaptiveAvgPool2d(1), lib.Flatten(), lib.Linear(16, 5)]


@pytest.mark.parametrize("threads", [1, 2])
def test_twenty_step_loss_trajectory_matches_torch(threads):
    from conftest import kernel_threads

    nnlite.manual_seed(0)
    model = nn.Sequential(*_layers(nn))
    tmodel = torch.nn.Sequential(*_layers(torch.nn))
    tmodel.load_state_dict({k: torch.from_numpy(v.copy())
                            for k, v in model.state_dict().items()})
    opt = nnlite.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    ours, theirs = [], []
    with kernel_threads(threads):
        for _ in range(20):
            x = rng.standard_normal((6, 3, 13, 11)).astype(np.float32)
            y = rng.integers(0, 5, size=6)
            loss = F.cross_entropy(model(nnlite.tensor(x)), nnlite.tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            ours.append(float(loss.data))
            tloss = torch.nn.functional.cross_entropy(tmodel(torch.from_numpy(x)),
                                                      torch.from_numpy(y))
            topt.zero_grad()
            tloss.backward()
            topt.step()
            theirs.append(float(tloss.detach()))
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    assert ours[-1] != ours[0]                                       # it really trained
    for k, v in tmodel.state_dict().items():                         # running stats too
        np.testing.assert_allclose(model.state_dict()[k], v.numpy(), rtol=1e-3, atol=1e-4,
                                   err_msg=k)
