"""The ISMRMRD XML header parser and builder: re-exported from ``recon.io.ismrmrd_header``, their home
(fastMRI files carry the header of their raw scan; see that module for the fields and fastMRI's
k-space padding rule)."""

from recon.io.ismrmrd_header import (  # noqa: F401
    ISMRMRD_NAMESPACE,
    LIMIT_NAMES,
    TRAJECTORY_TYPES,
    HeaderError,
    IsmrmrdHeader,
    Limit,
    build_ismrmrd_header,
    parse_ismrmrd_header,
)
