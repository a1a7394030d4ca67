"""bgmatting.metrics against hand-computed values and values of the official MATLAB code.

"Octave" values below were produced by running the Deep Image Matting MATLAB files (compute_sad_loss.m,
compute_mse_loss.m, compute_gradient_loss.m, compute_connectivity_error.m with step 0.1) unchanged in
GNU Octave 7.3 with the image package, on the very arrays written here. MATLAB works in single precision,
hence the 1e-6 relative tolerance. Its Grad and Conn are raw sums; ours are in thousands.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from bgmatting import metrics as M

# --------------------------------------------------------------------------- Octave reference cases (8-bit)
CASE_A = dict(
    pred=[[255, 255, 255, 255, 101, 0, 0, 2, 0],
          [247, 207, 227, 218, 147, 64, 40, 0, 52],
          [166, 221, 255, 255, 179, 60, 0, 8, 0],
          [56, 105, 228, 255, 253, 150, 75, 46, 57],
          [0, 106, 211, 255, 255, 211, 183, 107, 69],
          [50, 30, 33, 175, 248, 126, 95, 32, 27],
          [0, 0, 15, 83, 255, 109, 44, 0, 61]],
    gt=[[255, 255, 255, 223, 128, 32, 0, 0, 0],
        [255, 255, 255, 239, 159, 48, 0, 0, 0],
        [191, 207, 239, 255, 207, 96, 16, 0, 0],
        [64, 112, 207, 255, 239, 175, 80, 16, 0],
        [0, 48, 159, 239, 255, 223, 128, 32, 0],
        [0, 16, 80, 175, 223, 175, 80, 16, 0],
        [0, 0, 32, 128, 191, 128, 32, 0, 0]],
    trimap=[[128, 128, 0, 128, 128, 128, 128, 128, 128],
            [128, 128, 128, 128, 255, 128, 128, 255, 128],
            [128, 128, 255, 0, 255, 128, 128, 0, 128],
            [255, 128, 255, 128, 128, 128, 128, 0, 128],
            [128, 0, 128, 128, 128, 0, 128, 255, 0],
            [128, 0, 128, 128, 128, 0, 128, 255, 128],
            [128, 255, 128, 0, 0, 128, 255, 0, 0]],
    octave=dict(sad=0.0032470591832, mse=0.0116778174415, grad=1.16475129128, conn=2.95882344246),
)
CASE_B = dict(
    pred=[[255, 0, 70, 4, 45, 85, 145, 164, 172],
          [50, 0, 21, 0, 103, 74, 156, 223, 138],
          [76, 4, 0, 15, 69, 73, 186, 125, 146],
          [32, 22, 0, 54, 98, 57, 64, 120, 115],
          [0, 66, 0, 0, 0, 49, 54, 65, 27],
          [11, 0, 14, 0, 10, 0, 86, 27, 4],
          [0, 36, 24, 45, 24, 41, 32, 43, 0]],
    gt=[[255, 4, 13, 32, 64, 104, 145, 175, 186],
        [1, 4, 12, 30, 59, 98, 136, 165, 175],
        [1, 3, 10, 24, 48, 80, 112, 136, 145],
        [1, 2, 7, 16, 33, 56, 80, 98, 104],
        [0, 1, 4, 9, 19, 34, 49, 60, 65],
        [0, 0, 2, 5, 10, 18, 27, 34, 37],
        [0, 0, 1, 3, 7, 13, 20, 25, 27]],
    trimap=[[128, 0, 255, 128, 128, 128, 0, 128, 0],
            [128, 128, 128, 0, 0, 128, 128, 128, 255],
            [128, 0, 0, 0, 255, 128, 128, 128, 255],
            [128, 128, 0, 0, 0, 128, 128, 0, 128],
            [128, 128, 0, 128, 0, 0, 128, 255, 0],
            [0, 128, 128, 0, 128, 0, 0, 0, 128],
            [128, 128, 128, 128, 128, 128, 128, 128, 128]],
    octave=dict(sad=0.00319215701893, mse=0.0136737432331, grad=0.660708010197, conn=2.19803905487),
)

# Two equally large components of the intersection (4 x 6, whole image unknown): MATLAB keeps the one met
# first in column-major order. Octave: 10.3274507523 (raw); keeping the row-major first one would give 10.3373.
TIE = dict(
    pred=[[40, 0, 0, 255, 255, 0], [0, 180, 0, 0, 0, 255], [0, 0, 230, 0, 180, 40], [0, 40, 0, 0, 255, 255]],
    gt=[[0, 90, 40, 90, 130, 130], [40, 255, 230, 255, 40, 180], [40, 0, 180, 255, 230, 0], [0, 230, 180, 255, 0, 255]],
    octave_conn=10.3274507523,
)


def _case(case):
    return (np.array(case["pred"]) / 255.0, np.array(case["gt"]) / 255.0, np.array(case["trimap"], dtype=np.uint8))


@pytest.mark.parametrize("case", [CASE_A, CASE_B], ids=["A", "B"])
def test_matches_the_matlab_code_run_in_octave(case):
    pred, gt, trimap = _case(case)
    ref = case["octave"]
    assert M.sad(pred, gt, trimap) == pytest.approx(ref["sad"], rel=1e-6)
    assert M.mse(pred, gt, trimap) == pytest.approx(ref["mse"], rel=1e-6)
    assert M.grad(pred, gt, trimap) == pytest.approx(ref["grad"] / 1000, rel=1e-6)
    assert M.conn(pred, gt, trimap) == pytest.approx(ref["conn"] / 1000, rel=1e-6)


def test_connectivity_tie_is_broken_in_column_major_order_like_matlab():
    pred, gt = np.array(TIE["pred"]) / 255.0, np.array(TIE["gt"]) / 255.0
    assert M.conn(pred, gt) * 1000 == pytest.approx(TIE["octave_conn"], rel=1e-6)
    assert M.conn(pred, gt, np.full(pred.shape, 128, np.uint8)) == M.conn(pred, gt)


# --------------------------------------------------------------------------- SAD / MSE by hand
# The pixel at (1, 2) is trimap-foreground while its ground truth is 0: MATLAB ignores it, whole-image ports
# (e.g. mmagic's SAD) count it.
PRED = np.array([[0.0, 0.5, 1.0], [0.25, 0.75, 1.0]])
GT = np.array([[0.0, 1.0, 1.0], [0.5, 0.5, 0.0]])
TRIMAP = np.array([[0, 128, 255], [128, 128, 255]], dtype=np.uint8)


def test_sad_and_mse_count_only_unknown_pixels():
    # unknown pixels: |0.5 - 1| + |0.25 - 0.5| + |0.75 - 0.5| = 1.0; squares 0.25 + 0.0625 + 0.0625 over 3 pixels
    assert M.sad(PRED, GT, TRIMAP) == pytest.approx(1.0 / 1000)  # Octave: 0.001000000047
    assert M.mse(PRED, GT, TRIMAP) == pytest.approx(0.375 / 3)  # Octave: 0.125
    # whole-image numbers a trimap-ignoring port would report instead:
    assert M.sad(PRED, GT, TRIMAP) != pytest.approx(2.0 / 1000)
    assert M.mse(PRED, GT, TRIMAP) != pytest.approx(1.375 / 3)


def test_no_trimap_means_every_pixel():
    assert M.sad(PRED, GT) == pytest.approx(2.0 / 1000)
    assert M.mse(PRED, GT) == pytest.approx(1.375 / 6)
    everything = np.full(PRED.shape, 128, np.uint8)
    for f in (M.sad, M.mse, M.grad, M.conn):
        assert f(PRED, GT) == pytest.approx(f(PRED, GT, everything))


def test_identical_prediction_scores_zero_everywhere(rng):
    gt = rng.random((12, 15))
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), size=gt.shape)
    for f in (M.sad, M.mse, M.grad, M.conn):
        assert f(gt, gt, trimap) == 0.0
        assert f(gt, gt) == 0.0


def test_mse_of_an_empty_unknown_region_is_nan_like_matlab():
    assert math.isnan(M.mse(PRED, GT, np.zeros(PRED.shape, np.uint8)))
    assert M.sad(PRED, GT, np.zeros(PRED.shape, np.uint8)) == 0.0


def test_false_foreground_is_the_share_of_true_background_called_foreground():
    gt = np.zeros((4, 5))
    gt[:, :2] = 1.0
    gt[0, 2], gt[1, 2] = 0.05, 0.1  # still background (< 0.1); not background any more
    pred = gt.copy()
    pred[0, 4], pred[1, 4], pred[2, 3], pred[0, 2] = 0.6, 0.5, 0.9, 0.51  # > 0.5 counts, 0.5 does not
    background = 4 * 5 - 8 - 1  # 11 pixels with gt < 0.1
    assert M.false_foreground(pred, gt) == pytest.approx(3 / background)
    assert M.false_foreground(gt, gt) == 0.0
    assert math.isnan(M.false_foreground(gt, np.ones_like(gt)))  # no background to be wrong on


# --------------------------------------------------------------------------- Grad
def test_gradient_kernel_is_matlabs_9x9_normalised_gaussian_derivative():
    sigma, eps = 1.4, 1e-2
    halfsize = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    assert halfsize == 4
    hx = np.zeros((9, 9))
    for i in range(9):  # gaussgradient.m's double loop
        for j in range(9):
            u, v = i - 4, j - 4
            g = math.exp(-u * u / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
            dg = -v * math.exp(-v * v / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi)) / sigma**2
            hx[i, j] = g * dg
    hx /= math.sqrt((hx**2).sum())
    smooth, derivative = M.gaussian_gradient_kernels()
    np.testing.assert_allclose(np.outer(smooth, derivative), hx, rtol=0, atol=1e-15)


def test_gaussian_gradient_is_imfilter_replicate_conv(rng):
    image = rng.random((6, 7))
    smooth, derivative = M.gaussian_gradient_kernels()
    hx = np.outer(smooth, derivative)
    h, w = image.shape
    expected_x, expected_y = np.zeros_like(image), np.zeros_like(image)
    for y in range(h):
        for x in range(w):
            for i in range(9):
                for j in range(9):  # convolution: out(y, x) = sum h(i, j) * in(y - (i - 4), x - (j - 4))
                    yy, xx = min(max(y - (i - 4), 0), h - 1), min(max(x - (j - 4), 0), w - 1)
                    expected_x[y, x] += hx[i, j] * image[yy, xx]
                    xx2, yy2 = min(max(x - (i - 4), 0), w - 1), min(max(y - (j - 4), 0), h - 1)
                    expected_y[y, x] += hx[i, j] * image[yy2, xx2]  # hy = hx'
    gx, gy = M.gaussian_gradient(image)
    np.testing.assert_allclose(gx, expected_x, atol=1e-12)
    np.testing.assert_allclose(gy, expected_y, atol=1e-12)


def test_grad_of_a_step_against_a_flat_prediction():
    # gt: vertical step 0 -> 1 between columns 2 and 3; pred: flat 0 (zero gradient). Along y the image is
    # constant, so gy = 0 and gx(x) = sum(smooth) * sum_j derivative[j] * step(x - (j - 4)) (replicated).
    gt = np.zeros((5, 6))
    gt[:, 3:] = 1.0
    smooth, derivative = M.gaussian_gradient_kernels()
    gx = np.array([smooth.sum() * sum(derivative[j] * (min(max(x - (j - 4), 0), 5) >= 3) for j in range(9))
                   for x in range(6)])
    trimap = np.zeros(gt.shape, np.uint8)
    trimap[:, 2:4] = 128  # the two columns at the edge
    expected = 5 * (gx[2] ** 2 + gx[3] ** 2) / 1000
    assert M.grad(np.zeros_like(gt), gt, trimap) == pytest.approx(expected, rel=1e-6)
    assert expected > 0


def test_grad_normalises_each_matte_to_its_range_like_mat2gray():
    gt = np.zeros((8, 8))
    gt[:, 4:] = 1.0
    half = gt * 0.5  # mat2gray stretches it back to [0, 1]
    assert M.grad(half, gt) == pytest.approx(0.0, abs=1e-12)
    assert M.sad(half, gt) > 0


# --------------------------------------------------------------------------- Conn by hand
def test_conn_levels_and_phi_by_hand():
    # one row, one component: levels 1, 0.6, 0.5, 0 (the last threshold each pixel survives);
    # phi(pred) = [1, 1, 1, 0.7], phi(gt) = [1, 0.6, 1, 1] -> 0.4 + 0.3
    pred, gt = np.array([[1.0, 0.6, 0.5, 0.3]]), np.array([[1.0, 1.0, 0.5, 0.0]])
    np.testing.assert_allclose(M.connectivity_levels(pred, gt), [[1.0, 0.6, 0.5, 0.0]])
    assert M.conn(pred, gt) == pytest.approx(0.7 / 1000)  # Octave: 0.6999999881


def test_conn_penalises_pixels_outside_the_largest_component():
    # (0, 3) is cut off from the larger component, so its level is 0: phi(pred) = 1 - 0.9, phi(gt) = 0.
    pred = np.array([[1.0, 1.0, 0.0, 0.9], [0.0, 0.0, 0.0, 0.0]])
    gt = np.array([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    assert M.conn(pred, gt) == pytest.approx(0.1 / 1000)  # Octave: 0.1000000238
    connected = pred.copy()
    connected[0, 2] = gt[0, 2] = 1.0  # bridge the gap: level 0.9, differences below 0.15 vanish
    assert M.conn(connected, gt) == pytest.approx(0.0)


def test_conn_with_an_empty_intersection_does_not_fail():
    # MATLAB's code errors when no pixel passes a threshold in both mattes; we treat it as no component.
    gt = np.array([[0.0, 0.5], [1.0, 1.0]])
    pred = np.zeros_like(gt)
    # levels are all 0; phi(pred) = 1, phi(gt) = [1, 0.5, 0, 0]
    assert M.conn(pred, gt) == pytest.approx(2.5 / 1000)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="uint8"):
        M.sad(np.zeros((2, 2), np.uint8), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"pred: values outside \[0, 1\]"):
        M.sad(np.full((2, 2), 1.5), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        M.mse(np.zeros((2, 2)), np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="shape"):
        M.grad(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="0/128/255"):
        M.conn(np.zeros((2, 2)), np.zeros((2, 2)), np.full((2, 2), 100, np.uint8))
    with pytest.raises(ValueError, match="trimap shape"):
        M.sad(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((3, 3), np.uint8))


# --------------------------------------------------------------------------- foreground
def test_foreground_metrics_count_pixels_with_positive_gt_alpha():
    gt_alpha = np.array([[0.0, 0.5], [1.0, 1.0]])
    gt_fg = np.zeros((2, 2, 3))
    pred_fg = np.zeros((2, 2, 3))
    pred_fg[0, 0] = 1.0  # alpha 0: ignored
    pred_fg[0, 1] = [0.5, 0.0, 0.0]
    pred_fg[1, 1] = [0.1, 0.2, 0.3]
    # region: 3 pixels x 3 channels; squares 0.25 + 0.01 + 0.04 + 0.09
    assert M.foreground_mse(pred_fg, gt_fg, gt_alpha) == pytest.approx(0.39 / 9)
    assert M.foreground_sad(pred_fg, gt_fg, gt_alpha) == pytest.approx(1.1 / 1000)
    trimap = np.array([[128, 128], [255, 255]], np.uint8)  # with a trimap: only (0, 1)
    assert M.foreground_mse(pred_fg, gt_fg, gt_alpha, trimap) == pytest.approx(0.25 / 3)
    assert M.foreground_mse(gt_fg, gt_fg, gt_alpha) == 0.0
    assert math.isnan(M.foreground_mse(pred_fg, gt_fg, np.zeros((2, 2))))


# --------------------------------------------------------------------------- video
def test_dtssd_by_hand():
    pred = np.array([[[0.0, 0.0]], [[0.5, 0.0]], [[0.5, 0.5]]])
    gt = np.array([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 0.0]]])
    # pairs: differences (-0.5, 0) and (0, 0.5): sqrt(0.25 / 2) each, x100
    assert M.dtssd(pred, gt) == pytest.approx(100 * math.sqrt(0.125))
    dim = 0.9 * gt
    assert M.dtssd(dim + 0.05, dim) == pytest.approx(0.0, abs=1e-12)  # the same error in every frame
    trimaps = [np.array([[128, 0]], np.uint8)] * 3  # only the first pixel: sqrt(0.25) then 0
    assert M.dtssd(pred, gt, trimaps) == pytest.approx(100 * 0.25)
    with pytest.raises(ValueError, match="2 frames"):
        M.dtssd(pred[:1], gt[:1])


def test_messddt_by_hand_and_motion_compensation():
    pred = np.array([[[0.0, 0.0]], [[0.5, 0.0]], [[0.5, 0.5]]])
    gt = np.array([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 0.0]]])
    still = [np.zeros((1, 2, 2))] * 2
    # squared errors per frame: [0, 0], [0.25, 0], [0.25, 0.25]; |differences| average 0.125 per pair, x1000
    assert M.messddt(pred, gt, flows=still) == pytest.approx(125.0)
    # an error that moves with the subject (one pixel right per frame) costs nothing once motion-compensated
    gt_moving = np.array([[[1.0, 0.0, 0.0, 0.0]], [[1.0, 1.0, 0.0, 0.0]]])
    pred_moving = np.array([[[1.0, 0.5, 0.0, 0.0]], [[1.0, 1.0, 0.5, 0.0]]])
    right = [np.stack([np.ones((1, 4)), np.zeros((1, 4))], axis=-1)]
    assert M.messddt(pred_moving, gt_moving, flows=right) == pytest.approx(0.0)
    assert M.messddt(pred_moving, gt_moving, flows=[np.zeros((1, 4, 2))]) == pytest.approx(1000 * 0.5 / 4)
    assert M.dtssd(pred_moving, gt_moving) > 0


def test_messddt_estimates_the_ground_truth_motion_itself():
    yy, xx = np.mgrid[0:64, 0:64]
    frames = [np.clip(1.5 - np.hypot(yy - 32, xx - 20 - 3 * t) / 8, 0, 1) for t in range(3)]
    flow = M.ground_truth_flow(frames[0], frames[1])
    assert np.median(flow[..., 0][frames[0] > 0.2]) == pytest.approx(3.0, abs=0.6)
    # prediction = ground truth shifted with the motion: its error moves along too
    shifted = [np.roll(f, 1, axis=1) for f in frames]
    compensated = M.messddt(shifted, frames)
    uncompensated = M.messddt(shifted, frames, flows=[np.zeros((64, 64, 2))] * 2)
    assert compensated < 0.5 * uncompensated
