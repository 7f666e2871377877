"""Image quality against a reference: PSNR and SSIM (per image; images in [0, 1], data range 1).

* PSNR = 10 log10(L^2 / MSE), MSE over all pixels and channels of one image. Identical images
  would give infinity; the MSE is floored at 1e-10, so PSNR is capped at 100 dB (keeps JSON valid).
* SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from error visibility to
  structural similarity", eq. 13): local means, variances and covariance under an 11 x 11 Gaussian
  window with sigma 1.5 (normalised), C1 = (0.01 L)^2, C2 = (0.03 L)^2,
  SSIM = mean over the window positions inside the image of
  (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
  averaged over channels. This equals scikit-image's ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1)``. Images smaller than 11 pixels use the
  largest odd window that fits (same sigma).
"""

from __future__ import annotations

import numpy as np
import torch

from ddpmctl.errors import InputError

PSNR_CAP_MSE = 1e-10


def _pair(x, ref) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(torch.float64)
    ref = torch.as_tensor(np.asarray(ref) if not isinstance(ref, torch.Tensor) else ref).to(torch.float64)
    if x.shape != ref.shape:
        raise InputError(
            f"cannot compare images of shape {tuple(x.shape)} with a reference of shape {tuple(ref.shape)}"
        )
    return x, ref


def mse(x, ref) -> np.ndarray:
    """Mean squared error per sample (N,)."""
    x, ref = _pair(x, ref)
    return ((x - ref) ** 2).reshape(x.shape[0], -1).mean(1).numpy()


def psnr(x, ref, data_range: float = 1.0) -> np.ndarray:
    """PSNR in dB per image (N,), capped at 100 dB for (nearly) identical images."""
    m = np.maximum(mse(x, ref), PSNR_CAP_MSE * data_range**2)
    return 10.0 * np.log10(data_range**2 / m)


def gaussian_window(size: int, sigma: float = 1.5) -> torch.Tensor:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-0.5 * (r / sigma) ** 2)
    return w / w.sum()


def ssim(x, ref, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """SSIM per image (N,) for images (N, C, H, W) (see the module docstring)."""
    x, ref = _pair(x, ref)
    if x.ndim != 4:
        raise InputError(f"SSIM needs images (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    size = min(win_size, h, w)
    size -= 1 - size % 2  # odd
    win = gaussian_window(size, sigma)
    kx = win.reshape(1, 1, 1, size).expand(c, 1, 1, size)
    ky = win.reshape(1, 1, size, 1).expand(c, 1, size, 1)

    def blur(z):  # separable Gaussian filter, 'valid' positions only
        return torch.nn.functional.conv2d(torch.nn.functional.conv2d(z, kx, groups=c), ky, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(ref)
    sxx = blur(x * x) - mu_x**2
    syy = blur(ref * ref) - mu_y**2
    sxy = blur(x * ref) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.reshape(n, -1).mean(1).numpy()


def quality(x, ref) -> dict:
    """Mean PSNR and SSIM over a set of images (or RMSE for points): a small JSON-able dict."""
    x_t, ref_t = _pair(x, ref)
    if x_t.ndim == 4:
        return {"psnr": float(np.mean(psnr(x_t, ref_t))), "ssim": float(np.mean(ssim(x_t, ref_t)))}
    return {"rmse": float(np.sqrt(np.mean(mse(x_t, ref_t))))}
