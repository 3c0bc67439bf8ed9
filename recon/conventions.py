"""The one home of recon's conventions (units, signs, axes, scaling).

NUFFT (recon.ops.Nufft)
    Trajectory ``coord``: shape ``(..., M, d)`` in cycles per field of view ("grid units"), range
    ``[-N/2, N/2]`` per axis, last axis ordered like the image axes (BART/SigPy convention).
    Forward (type 2)::

        y_j = (1/sqrt(prod N)) * sum_n f[n] * exp(-2 pi i * sum_a k_ja * x_a / N_a)

    with centred integer positions ``x_a = n_a - floor(N_a / 2)`` (odd sizes included). The adjoint
    (type 1) is its exact conjugate transpose. This equals ``sigpy.nufft`` / ``sigpy.nufft_adjoint``.

Cartesian FFT (recon.ops.FFT)
    Centred and orthonormal: ``fftshift(fft(ifftshift(x), norm="ortho"))`` over the image axes,
    as fastMRI. A NUFFT on the integer Cartesian grid equals this FFT.

Images
    Axes ``(..., z, y, x)``; time and coils lead: ``(t, c, z, y, x)``. MRI images are complex64 by
    default, CT images float32.

CT (recon.geometry, re-exported by recon.ct)
    ASTRA-style geometry descriptions. Lengths in mm, angles in radians, voxel size in mm.
    Projections are line integrals of the attenuation map (1/mm times mm: unitless).
    Geometry conventions (axes, signs, sinogram layouts, the per-view vector form, the mapping to
    ASTRA): the package docstring of recon/geometry/__init__.py (and docs/ct_geometry.md, with a picture).

Patient geometry of written images (recon.io)
    Image-to-patient placement (LPS), the NIfTI affine and DICOM position/orientation, and which voxel
    sits at the centre per modality (MRI: voxel n // 2, the FFT centre; CT: the geometric centre
    (n - 1) / 2, the rotation axis): recon/io/geometry.py.
"""

#: NUFFT sign of the forward transform's exponent.
NUFFT_FORWARD_SIGN = -1
#: Default complex dtype for MRI data and images.
MRI_DTYPE = "complex64"
#: Default real dtype for CT data and images.
CT_DTYPE = "float32"


def centred_positions(n: int):
    """Integer positions ``x = i - floor(n/2)`` of image index ``i`` along an axis of size ``n``."""
    import numpy as np

    return np.arange(n) - n // 2
