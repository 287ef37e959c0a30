"""Read DICOM folders and files into a :class:`CTVolume` that is never silently wrong.

What this reader guarantees:

* a folder is searched recursively; every series found is listed, and the CT image series with the
  most slices is chosen (or the one you name with ``series_uid``), with a warning naming it;
* slices are ordered by their position along the slice normal (ImagePositionPatient projected on
  the cross product of the ImageOrientationPatient cosines), never by file name or InstanceNumber;
* voxels are Hounsfield units from RescaleSlope / RescaleIntercept, slice by slice;
* compressed transfer syntaxes (JPEG Lossless, JPEG-LS, JPEG 2000, RLE) decode through GDCM or
  pylibjpeg, whichever is installed;
* enhanced (multi-frame) CT files read frame by frame with their per-frame geometry;
* anything odd (no Modality, a non-CT modality, missing rescale tags, duplicate or missing slices,
  uneven spacing, gantry tilt, a single slice) is a warning with the positions concerned, and
  anything that would make the answer wrong (mixed reconstructions at one position, values that
  cannot be HU, a corrupt file) is a :class:`~m3lung.errors.DicomError` saying what to do.
"""

from m3lung.io.dicom.read import read_dicom
from m3lung.io.dicom.scan import LARGE_SERIES_SLICES, DicomScan, SeriesInfo, scan_dicom

__all__ = ["LARGE_SERIES_SLICES", "DicomScan", "SeriesInfo", "read_dicom", "scan_dicom"]
