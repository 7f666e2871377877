"""ddpmctl's FID code against numbers made by pytorch-fid 0.3.0 and torch-fidelity 0.4.0 THEMSELVES
(issue #20): the fixture ``tests/data/fid_reference.{json,npz}`` was written once by
``benchmarks/make_fid_fixture.py`` in an environment with those two packages (tests/data/README.md).

Both sides regenerate the same inputs: the images from make-data (written as PNG files by
``ddpmctl.io.save_folder``; the pixels' SHA-256 is checked) and the key-seeded Inception weights
(``benchmarks/fid_reference_common.py``; the state dict's SHA-256 is checked), which ddpmctl reads
through its normal ``--weights FILE.pth`` path. What agrees then is the code: the network, the
preprocessing (resize, scaling, grey -> RGB), the statistics and the Frechet distance. The
weights' identity with the TF-2015 file is not checked here (docs/fid.md, "Agreement").

Tolerances: measured on the 2-core build machine (ddpmctl on torch 2.13 CPU, the fixture made on
torch 2.14.1) and set a little above what was measured (numbers below and in docs/fid.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import fid_reference_common as common  # noqa: E402

from ddpmctl import fid  # noqa: E402
from ddpmctl.nets import inception as net  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
META = json.loads((DATA / "fid_reference.json").read_text())
TOOLS = {"pytorch_fid": "pytorch-fid", "torch_fidelity": "tf"}  # fixture's tool -> ddpmctl --preprocess
# Measured on the 2-core build machine (max |ddpmctl - tool|), and the tolerance a little above:
# preprocessed input: pytorch-fid 1.2e-7 (one float32 step near 1), torch-fidelity 2.9e-6 (its TF1 resize
#   computes the sampling positions in float32, ours in float64); per-channel sums: 1.1e-8 relative;
INPUT_TOL = {"pytorch_fid": 5e-7, "torch_fidelity": 6e-6}
# pool3 features (values up to 4.3): 4.9e-5 and 7.8e-5; the order of float32 sums in channels_last
#   layout (in NCHW layout ddpmctl's features equal pytorch-fid's bit for bit; pytorch-fid's own
#   features move by 6.1e-5 when it runs in channels_last);
FEATURE_TOL = 2e-4
# FID of the two sets (6 vs 6 images, ~117 and ~111): 3.3e-7 and 1.0e-6 relative.
FID_RTOL = 3e-6


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA / "fid_reference.npz", allow_pickle=False) as z:
        return dict(z)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The key-seeded weights as a pytorch-fid ``.pth`` and the CI image sets as PNG folders."""
    tmp = tmp_path_factory.mktemp("fid_reference")
    state = common.key_seeded_state_dict(net.expected_state_dict_shapes())
    weights = tmp / "key_seeded.pth"
    torch.save(state, weights)
    folders = {}
    for name in common.CI_SETS:
        common.write_image_set(name, tmp / name)
        folders[name] = tmp / name
    return {"weights": weights, "sha256": common.state_dict_sha256(state), "folders": folders}


def first_images(folder: Path, k: int) -> np.ndarray:
    """The first ``k`` images of a folder as ddpmctl's folder reader gives them (grey stays 1 channel)."""
    return next(fid.open_source(folder).batches(k))


def test_the_inputs_are_the_fixtures(inputs):
    assert inputs["sha256"] == META["weights"]["sha256"], "the key-seeded weights changed: remake the fixture"
    assert len(net.expected_state_dict_shapes()) == META["weights"]["keys"]
    for name, folder in inputs["folders"].items():
        assert common.pixels_sha256(folder) == META["ci"]["sets"][name]["pixels_sha256"], f"make-data {name} changed"
    assert fid.open_source(inputs["folders"]["grey"]).item_shape == (1, 32, 32)
    assert fid.open_source(inputs["folders"]["rgb"]).item_shape == (3, 40, 40)


@pytest.mark.parametrize("tool", TOOLS)
def test_preprocessed_input_matches(inputs, ref, tool):
    """The 299 x 299 input after resize and scaling, grey repeated to RGB: each set's first image."""
    x = [torch.from_numpy(first_images(f, 1)) for f in inputs["folders"].values()]
    y = torch.cat([fid.preprocess(xi, TOOLS[tool]) for xi in x]).double()
    idx = torch.from_numpy(common.INPUT_INDEX)
    sub = y[:, :, idx][:, :, :, idx].numpy()
    np.testing.assert_allclose(sub, ref[f"{tool}_input"], rtol=0, atol=INPUT_TOL[tool])
    sums = torch.stack([y.sum((2, 3)), (y * y).sum((2, 3))], -1).numpy()
    np.testing.assert_allclose(sums, ref[f"{tool}_input_sums"], rtol=1e-7)


@pytest.mark.parametrize("tool", TOOLS)
def test_pool3_features_match(inputs, ref, tool):
    """The 2048-d pool3 features of the first images of each set, through ``--weights FILE.pth``."""
    k = common.STORED_PER_SET
    extractor = fid.InceptionFeatures(torch.device("cpu"), weights=inputs["weights"], preprocess=TOOLS[tool])
    assert not extractor.info.verified and extractor.info.format == "pth"
    with fid.exact_float32(), torch.inference_mode():
        f = torch.cat([extractor(first_images(folder, k)) for folder in inputs["folders"].values()]).numpy()
    expected = ref[f"{tool}_features"]
    assert f.shape == expected.shape == (2 * k, 2048)
    np.testing.assert_allclose(f, expected, rtol=0, atol=FEATURE_TOL)


@pytest.mark.parametrize("tool", TOOLS)
def test_fid_of_the_two_sets_matches(inputs, tool):
    """``ddpmctl fid grey/ rgb/`` against the tool's own FID of the same two PNG folders."""
    folders = inputs["folders"]
    r = run_cli(
        "fid", folders["grey"], folders["rgb"], "--weights", inputs["weights"],
        "--preprocess", TOOLS[tool], "--device", "cpu", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    got = json.loads(r.stdout)["fid"]
    expected = META["ci"]["fid"][tool]
    assert got == pytest.approx(expected, rel=FID_RTOL)


def test_frechet_distance_matches_on_well_conditioned_statistics():
    mu1, s1, mu2, s2, digest = common.synthetic_statistics()
    synthetic = META["ci"]["frechet_synthetic"]
    assert digest == synthetic["samples_sha256"]
    got = fid.frechet_distance(mu1, s1, mu2, s2)
    for tool in TOOLS:
        assert got == pytest.approx(synthetic[tool], rel=1e-12)


def test_the_fixture_tells_the_two_preprocessings_apart(ref):
    """The tolerances are far below the gap between the two tools' preprocessing: a wrong resize or
    scaling would fail the tests above."""
    gap_input = np.abs(ref["pytorch_fid_input"] - ref["torch_fidelity_input"]).max()
    gap_features = np.abs(ref["pytorch_fid_features"] - ref["torch_fidelity_features"]).max()
    assert gap_input > 1000 * max(INPUT_TOL.values()) and gap_features > 1000 * FEATURE_TOL
    fids = META["ci"]["fid"]
    assert abs(fids["pytorch_fid"] - fids["torch_fidelity"]) > 1000 * FID_RTOL * fids["pytorch_fid"]
