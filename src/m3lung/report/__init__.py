"""Outputs: JSON, HTML, images and NIfTI/DICOM files a user opens in a viewer."""
