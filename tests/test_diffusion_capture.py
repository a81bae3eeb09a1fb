"""Feature capture for timm models: the hook on the classifier input equals forward_head(pre_logits=True)."""

import numpy as np
import pytest
import torch
from torch import nn

from lskd_plugins.diffusion.capture import ForwardHookManager, capture_timm, classifier_name, timm_templates
from lskd_plugins.diffusion.projection import augment
from lskd_plugins.errors import LskdError

torch.set_num_threads(1)


def test_hook_manager_records_inputs_and_outputs_and_removes_hooks():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    x = torch.randn(5, 4)
    with ForwardHookManager(model) as hooks:
        hooks.add_hook("2", requires_input=True, requires_output=True)
        out = model(x)
        io = hooks.pop_io_dict()["2"]
        torch.testing.assert_close(io["input"][0], torch.relu(model[0](x)))
        torch.testing.assert_close(io["output"][0], out)
        model(x)
        model(x)
        assert len(hooks.pop_io_dict()["2"]["input"]) == 2
        with pytest.raises(LskdError, match="no module named 'head'"):
            hooks.add_hook("head")
    model(x)
    assert not model[2]._forward_hooks
    assert hooks.pop_io_dict() == {}


@pytest.mark.parametrize("name", ["test_resnet", "test_vit"])
def test_timm_capture_equals_forward_head_pre_logits(name):
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5).eval()
    x = torch.randn(6, 3, 64, 64) if name == "test_resnet" else torch.randn(6, 3, 160, 160)
    y = torch.tensor([0, 1, 2, 3, 4, 2])
    batches = [(x[:4], y[:4]), (x[4:], y[4:])]
    ids = [2, 0, 4]
    cap = capture_timm(model, batches, prob_ids=ids, progress=False)
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
        logits = model(x)
    np.testing.assert_allclose(cap.features, ref.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        cap.probs, torch.softmax(logits, -1)[:, ids].double().numpy(), rtol=1e-5, atol=1e-7
    )
    assert np.array_equal(cap.labels, y.numpy())
    assert np.array_equal(cap.correct, (logits.argmax(-1) == y).numpy())
    t = timm_templates(model, ids)
    clf = model.get_classifier()
    np.testing.assert_allclose(t[:, :-1], clf.weight.detach()[ids].numpy())
    np.testing.assert_allclose(t[:, -1], clf.bias.detach()[ids].numpy())
    # bias-augmented features times bias-augmented templates are the model's logits
    np.testing.assert_allclose(
        augment(cap.features) @ t.T, logits[:, ids].double().numpy(), rtol=1e-4, atol=1e-4
    )
    assert classifier_name(model) in ("fc", "head", "head.fc")


def test_model_without_linear_classifier_is_a_user_error():
    import timm

    model = timm.create_model("test_resnet", num_classes=0)
    with pytest.raises(LskdError, match="not a linear layer"):
        classifier_name(model)
