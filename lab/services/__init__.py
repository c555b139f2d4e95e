"""Code that runs INSIDE the lab's containers (mock API, inference server).

The images copy this package (with `lab/__init__.py`) into their build context; it must
never import the host-side orchestration (lab.stack, lab.config, ...), only the standard
library and the packages in the image's requirements.txt.
"""
